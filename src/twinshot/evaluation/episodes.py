"""N-way K-shot episodic evaluation: the few-shot literature's protocol.

An episode draws ``n_way`` classes, ``n_shot`` support and ``n_query`` query images of
each (:class:`twinshot.data.EpisodeSampler`, seeded, so the same seed gives the same
episodes). Each query is compared with every support image by the model's head
(``head.pairwise_logits``, **higher is more alike**) and labelled with the best class.

Rule for ``n_shot > 1``: a class's score for a query is the **mean of the logits** of the
query against that class's ``n_shot`` support images (the Siamese analogue of comparing
with the class prototype, without assuming the head is a distance).

Every image of the dataset is embedded **once** (``model.embed_images``); episodes only
index the embeddings and are scored in blocks (``torch.func.vmap`` over the head), so 1000
episodes of 20-way 1-shot take a fraction of a second after embedding. This is also the trainer's per-epoch validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, TypeVar

import torch

from twinshot.data.dataset import LabelledImages
from twinshot.data.samplers import EpisodeSampler
from twinshot.errors import ConfigError, DataError
from twinshot.evaluation.metrics import mean_ci95
from twinshot.models.heads import Head
from twinshot.models.siamese import SiameseNetwork

T = TypeVar("T")


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN: undefined values (a CI over one episode) become ``None``."""
    return float(x) if math.isfinite(x) else None


def track(iterable: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` in a transient rich progress bar on stderr when ``enabled``
    (stdout stays clean for ``--json``)."""
    if not enabled:
        return iterable
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(iterable, total=total, description=description, console=Console(stderr=True), transient=True)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def embed_dataset(
    model: SiameseNetwork,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Embed uint8 images ``(N, C, H, W)`` (already at the model's size) in eval mode.

    Batches are moved to the model's device one at a time, so a CPU-held dataset can be
    embedded by a GPU model. Returns float32 ``(N, D)`` on the model's device.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    device = model_device(model)
    starts = range(0, int(images.shape[0]), batch_size)
    out = [
        model.embed_images(images[i : i + batch_size].to(device), batch_size=batch_size)
        for i in track(starts, total=len(starts), description="embedding", enabled=progress)
    ]
    if not out:
        return torch.zeros((0, model.embedding_dim), device=device)
    return torch.cat(out, 0)


@dataclass(frozen=True)
class EpisodeResult:
    """Outcome of an episodic evaluation.

    Attributes:
        accuracy: mean over episodes of the fraction of queries labelled correctly (0..1).
        ci95: half-width of the normal 95% confidence interval of ``accuracy`` over
            episodes (NaN for a single episode).
        accuracies: per-episode accuracies, ``episodes`` values.
        n_way, n_shot, n_query, episodes, within_group, seed: the protocol.
    """

    accuracy: float
    ci95: float
    accuracies: tuple[float, ...]
    n_way: int
    n_shot: int
    n_query: int
    episodes: int
    within_group: bool
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (NaN becomes ``None``)."""
        return {
            "protocol": "episodes",
            "accuracy": self.accuracy,
            "ci95": _finite_or_none(self.ci95),
            "n_way": self.n_way,
            "n_shot": self.n_shot,
            "n_query": self.n_query,
            "episodes": self.episodes,
            "within_group": self.within_group,
            "seed": self.seed,
            "accuracies": list(self.accuracies),
        }


#: Elements of the largest temporary (episodes x queries x supports x D) a block may create.
_BLOCK_ELEMENTS = 1 << 23
_MAX_BLOCK = 256


def _batched_logits(head: Head, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``head.pairwise_logits`` for a batch of episodes: ``(E, Q, D)``, ``(E, S, D)`` -> ``(E, Q, S)``.

    Vectorised over episodes with ``torch.func.vmap`` (few large operations instead of many
    small ones); a head whose operations vmap cannot batch is evaluated episode by episode.
    """
    try:
        return torch.func.vmap(head.pairwise_logits)(query, support)
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return torch.stack([head.pairwise_logits(q, s) for q, s in zip(query, support)])


def classify_episodes(
    head: Head,
    query: torch.Tensor,
    support: torch.Tensor,
    support_labels: torch.Tensor,
    n_way: int,
) -> torch.Tensor:
    """Label the queries of a batch of episodes by their support classes.

    Args:
        head: the comparison head (``pairwise_logits``, higher is more alike).
        query: embeddings ``(E, Q, D)``.
        support: embeddings ``(E, S, D)``.
        support_labels: int64 ``(E, S)`` in ``[0, n_way)``, every class present in each episode.
        n_way: number of classes.

    Returns:
        int64 ``(E, Q)``: for each query, the class whose support images have the highest
        **mean logit** against it (ties: the lowest class index).
    """
    logits = _batched_logits(head, query, support)  # (E, Q, S)
    one_hot = torch.nn.functional.one_hot(support_labels, n_way).to(logits.dtype)  # (E, S, W)
    counts = one_hot.sum(dim=1, keepdim=True)  # (E, 1, W)
    return (torch.bmm(logits, one_hot) / counts).argmax(dim=2)


def classify_queries(
    head: Head,
    query: torch.Tensor,
    support: torch.Tensor,
    support_labels: torch.Tensor,
    n_way: int,
) -> torch.Tensor:
    """One episode of :func:`classify_episodes`: ``query (Q, D)``, ``support (S, D)``,
    ``support_labels (S,)`` -> predicted classes ``(Q,)`` (highest mean logit; ties: lowest)."""
    return classify_episodes(head, query[None], support[None], support_labels[None], n_way)[0]


def _check_protocol(n_way: int, n_shot: int, n_query: int, episodes: int) -> None:
    for name, value, low in (("n_way", n_way, 2), ("n_shot", n_shot, 1), ("n_query", n_query, 1), ("episodes", episodes, 1)):
        if int(value) != value or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value}")


@torch.no_grad()
def evaluate_episodes(
    model: SiameseNetwork,
    dataset: LabelledImages,
    *,
    n_way: int = 20,
    n_shot: int = 1,
    n_query: int = 1,
    episodes: int = 1000,
    seed: int = 0,
    within_group: bool = False,
    batch_size: int = 256,
    progress: bool = False,
    skip_small: bool = False,
    embeddings: torch.Tensor | None = None,
) -> EpisodeResult:
    """Accuracy of ``model`` on ``episodes`` seeded N-way K-shot episodes of ``dataset``.

    Args:
        model: the Siamese network (any device; left in the train/eval mode it was in).
        dataset: labelled images at the model's preprocessing; every class needs at
            least ``n_shot + n_query`` images (else a DataError names the first that has fewer).
        n_way, n_shot, n_query: classes per episode, support and query images per class.
        episodes: number of episodes.
        seed: seed of the episode sampler (same seed, same episodes).
        within_group: draw all classes of an episode from one group (Omniglot's
            within-alphabet protocol, harder than across alphabets).
        batch_size: images per embedding batch.
        progress: show progress bars on stderr.
        skip_small: leave classes with fewer than ``n_shot + n_query`` images out of the
            episodes instead of raising (a training run's validation people with one photo).
        embeddings: precomputed embeddings ``(N, D)`` of ``dataset``'s images, in its order
            (e.g. another model's, or several models' combined); then only ``model.head``
            is used and nothing is embedded.

    Raises:
        ConfigError: for a protocol value out of range.
        DataError: when the dataset cannot supply such episodes (from the sampler).
    """
    _check_protocol(n_way, n_shot, n_query, episodes)
    if len(dataset) == 0:
        raise DataError("the dataset has no images")
    sampler = EpisodeSampler(
        dataset.labels,
        n_way,
        n_shot,
        n_query,
        episodes,
        seed=seed,
        class_groups=dataset.class_groups,
        within_group=within_group,
        class_names=dataset.class_names,
        skip_small=skip_small,
    )
    episode_list = list(sampler)
    if len(episode_list) != episodes:
        raise DataError(f"the episode sampler gave {len(episode_list)} episodes instead of {episodes}")
    if embeddings is None:
        embeddings = embed_dataset(model, dataset.images, batch_size=batch_size, progress=progress)
    elif embeddings.shape[0] != len(dataset):
        raise ConfigError(f"embeddings has {embeddings.shape[0]} rows for a dataset of {len(dataset)} images")
    device = embeddings.device
    support = torch.stack([ep.support for ep in episode_list]).to(device)  # (E, S)
    support_labels = torch.stack([ep.support_labels for ep in episode_list]).to(device)
    query = torch.stack([ep.query for ep in episode_list]).to(device)  # (E, Q)
    query_labels = torch.stack([ep.query_labels for ep in episode_list]).to(device)
    per_episode = query.shape[1] * support.shape[1] * max(1, embeddings.shape[1])
    block = max(1, min(_MAX_BLOCK, _BLOCK_ELEMENTS // per_episode))
    correct = []
    starts = range(0, episodes, block)
    for i in track(starts, total=len(starts), description="episodes", enabled=progress):
        j = i + block
        predicted = classify_episodes(
            model.head, embeddings[query[i:j]], embeddings[support[i:j]], support_labels[i:j], n_way
        )
        correct.append((predicted == query_labels[i:j]).sum(dim=1))
    n_queries = query.shape[1]
    accuracies = (torch.cat(correct).double() / n_queries).cpu().numpy()
    accuracy, ci95 = mean_ci95(accuracies)
    return EpisodeResult(
        accuracy=accuracy,
        ci95=ci95,
        accuracies=tuple(float(a) for a in accuracies),
        n_way=int(n_way),
        n_shot=int(n_shot),
        n_query=int(n_query),
        episodes=int(episodes),
        within_group=bool(within_group),
        seed=int(seed),
    )
