"""The demo (``twinshot demo``, ``make demo``): one-shot learning on Omniglot, end to end.

1. Load the Omniglot background set (30 alphabets) into memory.
2. Hold out whole alphabets; train a compact network on the others for a few minutes.
3. Report within-alphabet 20-way one-shot accuracy on the held-out alphabets.
4. One-shot recognition with a gallery: enroll **one** drawing of each of a few held-out
   characters, recognise other people's drawings of them, and reject a character that was
   never enrolled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from twinshot.errors import DataError, TwinshotError

DEFAULT_DATA = "../shared/datasets/omniglot/images_background.zip"
#: Steps of the quick model: about 2-3 minutes on 2 idle CPU cores.
DEFAULT_STEPS = 1500
#: Hard wall-clock cap of the training part (seconds).
DEFAULT_TIME_BUDGET = 240.0


@dataclass(frozen=True)
class Recognition:
    """One query of the recognition part."""

    query: str
    truth: str | None  # None: a character that was not enrolled
    predicted: str | None  # None: rejected as unknown
    best: str
    probability: float

    @property
    def correct(self) -> bool:
        return self.predicted == self.truth


@dataclass
class DemoResult:
    """What the demo measured.

    Attributes:
        run_dir: the training run (``best/`` is the model).
        accuracy, ci95: within-group N-way one-shot accuracy on held-out groups.
        n_way, episodes: the protocol.
        held_out: names of the held-out groups (alphabets).
        recognitions: the gallery queries, enrolled characters first, then the unknown one.
        gallery_path: the gallery file.
        images_per_second, train_seconds, load_seconds: timings.
    """

    run_dir: Path
    accuracy: float
    ci95: float
    n_way: int
    episodes: int
    held_out: list[str]
    recognitions: list[Recognition] = field(default_factory=list)
    gallery_path: Path | None = None
    images_per_second: float = float("nan")
    train_seconds: float = 0.0
    load_seconds: float = 0.0
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the measurements, the counts of the recognition part and each query."""
        known = [r for r in self.recognitions if r.truth is not None]
        unknown = [r for r in self.recognitions if r.truth is None]
        return {
            "run_dir": str(self.run_dir),
            "model": str(self.run_dir / "best"),
            "accuracy": self.accuracy,
            "ci95": self.ci95,
            "error": 1.0 - self.accuracy,
            "n_way": self.n_way,
            "n_shot": 1,
            "episodes": self.episodes,
            "held_out": list(self.held_out),
            "steps": self.steps,
            "images_per_second": self.images_per_second,
            "train_seconds": self.train_seconds,
            "load_seconds": self.load_seconds,
            "gallery": None if self.gallery_path is None else str(self.gallery_path),
            "n_recognised": sum(r.correct for r in known),
            "n_known_queries": len(known),
            "n_rejected": sum(r.correct for r in unknown),
            "n_unknown_queries": len(unknown),
            "recognitions": [
                {"query": r.query, "truth": r.truth, "predicted": r.predicted, "best": r.best,
                 "probability": r.probability, "correct": r.correct}
                for r in self.recognitions
            ],
        }


def demo_config(data: str | Path, steps: int, *, time_budget: float = DEFAULT_TIME_BUDGET, seed: int = 0) -> Any:
    """The quick model's config: the ``omniglot`` preset's data split, a compact Conv-4
    encoder (L2-normalised 64-d embeddings) on 28x28 inputs, trained for ``steps`` steps with
    the batch-hard triplet loss on batches of 30 characters x 4 drawings (the fastest
    learner per step in docs/experiments.md)."""
    from twinshot.training import load_config

    steps = max(1, int(steps))
    epochs = 2 if steps >= 2 else 1
    return load_config(
        preset="omniglot",
        overrides={
            "data.sources": [str(data)],
            "data.rotations": [],
            "model.encoder": "compact",
            "model.encoder_params": {"widths": [64, 64, 64, 64], "normalize": True},
            "model.head": "euclidean",
            "model.head_params": {},
            "model.preprocessing.size": [28, 28],
            "loss.name": "triplet",
            "loss.params": {"margin": 0.2, "mining": "batch_hard"},
            "sampler.n_classes": 30,
            "sampler.n_per_class": 4,
            "augmentation.name": "none",
            "augmentation.params": {},
            "schedule.name": "cosine",
            "schedule.warmup_steps": 0,
            "run.epochs": epochs,
            "run.steps_per_epoch": max(1, steps // epochs),
            "run.time_budget": time_budget,
            "run.seed": seed,
            "validation.episodes": 200,
        },
    )


@torch.no_grad()
def open_set_threshold(
    model: Any, dataset: Any, *, n_enrolled: int, fpir: float = 0.1, trials: int = 600, seed: int = 0
) -> float:
    """The acceptance threshold (a logit) at which about ``fpir`` of unknown drawings are
    accepted by a gallery of ``n_enrolled`` characters of their own alphabet, each enrolled
    with one drawing: simulated ``trials`` times on ``dataset`` (labelled images with groups,
    not the ones the demo enrolls)."""
    from twinshot.gallery import threshold_at_fpir

    g = torch.Generator().manual_seed(seed)
    emb = model.embed_images(dataset.images)
    by_class = dataset.class_indices()
    groups = [
        torch.nonzero(dataset.class_groups == gr).flatten() for gr in range(len(dataset.group_names))
    ]
    groups = [cls for cls in groups if len(cls) > n_enrolled]
    if not groups:
        raise DataError(f"no group has more than {n_enrolled} classes to simulate unknown drawings")
    best = []
    for _ in range(trials):
        cls = groups[int(torch.randint(len(groups), (1,), generator=g))]
        cls = cls[torch.randperm(len(cls), generator=g)]
        refs = torch.stack([by_class[int(c)][torch.randint(len(by_class[int(c)]), (1,), generator=g)][0] for c in cls[:n_enrolled]])
        members = by_class[int(cls[n_enrolled])]
        query = members[torch.randint(len(members), (1,), generator=g)]
        best.append(float(model.head.pairwise_logits(emb[query], emb[refs]).max()))
    return float(threshold_at_fpir(torch.tensor(best).numpy(), fpir))


def _short(name: str) -> str:
    return name.replace("_", " ")


def run_demo(
    *,
    data: str | Path = DEFAULT_DATA,
    out: str | Path,
    steps: int = DEFAULT_STEPS,
    time_budget: float = DEFAULT_TIME_BUDGET,
    episodes: int = 1000,
    n_enrolled: int = 5,
    queries_per_character: int = 3,
    seed: int = 0,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo and describe each stage through ``say``.

    Args:
        data: the Omniglot background set (zip or folder); any folder of class folders
            grouped in parent folders works.
        out: a new directory for the run and the gallery.
        steps: training steps of the quick model.
        time_budget: wall-clock cap of the training part, seconds.
        episodes: episodes of the final within-group evaluation.
        n_enrolled: characters enrolled in the gallery (one drawing each).
        queries_per_character: other drawings of each enrolled character to recognise.
        seed: seeds training, the split and the choice of characters.
        progress: progress bars on stderr.
        say: receives the demo's lines of output.

    Raises:
        DataError: one line when the dataset is missing or too small.
    """
    from twinshot.data.images import Preprocessing
    from twinshot.evaluation.episodes import evaluate_episodes
    from twinshot.gallery import Gallery
    from twinshot.models import load_model
    from twinshot.training import train
    from twinshot.training.calibrate import sample_pairs
    from twinshot.data import class_split
    from twinshot.training.data import RunData, load_sources, resolve_source

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TwinshotError(f"{out} already exists and is not empty; choose another --out")
    try:
        source = resolve_source(data)
    except DataError:
        raise DataError(
            f"Omniglot background set not found at {data}; download images_background.zip from "
            f"https://github.com/brendenlake/omniglot/tree/master/python and pass --data PATH"
        ) from None
    config = demo_config(source, steps, time_budget=time_budget, seed=seed)
    from twinshot.training.run import available_cores, idle_cores

    cores, threads = available_cores(), idle_cores()  # measured before the demo's own work

    # 1. data
    say(f"Loading {source.name} ...")
    t0 = time.perf_counter()
    pre = Preprocessing(size=tuple(config.model.preprocessing.size), invert=True)
    full = load_sources([str(source)], pre, progress=progress)
    load_seconds = time.perf_counter() - t0
    n_groups = len(full.group_names)
    if n_groups < 2:
        raise DataError(f"{source}: the demo needs class folders grouped in at least 2 parent folders (alphabets)")
    val_groups = 5 if n_groups >= 10 else 1
    split = class_split(full, val=val_groups, seed=config.data.split_seed, by="group")
    train_set, val = split.train, split.val
    assert val is not None
    say(
        f"  {full.n_classes} characters from {n_groups} alphabets, {len(full):,} drawings "
        f"({load_seconds:.1f} s)."
    )
    say(
        f"  Held out for testing, never seen in training: {len(val.group_names)} alphabets "
        f"({', '.join(_short(g) for g in val.group_names)}), {val.n_classes} characters."
    )
    sizes = torch.bincount(val.class_groups, minlength=len(val.group_names))
    n_way = min(20, int(sizes.max()))
    overrides = {
        "data.val": val_groups,
        "validation.n_way": n_way,
        "sampler.n_classes": min(config.sampler.n_classes, train_set.n_classes),
        "run.threads": threads,
    }

    # 2. train
    say(
        f"Training a compact Siamese encoder (triplet loss, hardest negatives; {config.total_steps} steps, "
        f"at most {time_budget / 60:.0f} min, {threads} thread{'s' if threads > 1 else ''}"
        + (f": {cores - threads} of {cores} cores are busy with other work" if threads < cores else "")
        + ") ..."
    )
    run_dir = out / "model"
    result = train(config, run_dir, overrides=overrides, progress=progress,
                   extra={"trained_with": "twinshot demo"}, data=RunData(train_set, val, full))
    if result.interrupted:
        raise KeyboardInterrupt
    say(
        f"  {result.steps} steps in {result.elapsed:.0f} s ({result.images_per_second:,.0f} images/s); "
        f"model saved in {run_dir / 'best'}"
    )

    # 3. one-shot accuracy
    model = load_model(run_dir)
    ev = evaluate_episodes(model, val, n_way=n_way, n_shot=1, n_query=1, episodes=episodes, seed=seed + 1, within_group=True)
    say(
        f"Within-alphabet {n_way}-way one-shot accuracy on the held-out alphabets: "
        f"{ev.accuracy:.1%} ± {ev.ci95:.1%} (error {1 - ev.accuracy:.1%}, {episodes} episodes; chance {1 / n_way:.0%})"
    )

    # 4. gallery: one drawing per character
    demo = DemoResult(
        run_dir=run_dir, accuracy=ev.accuracy, ci95=ev.ci95, n_way=n_way, episodes=episodes,
        held_out=list(val.group_names), images_per_second=result.images_per_second,
        train_seconds=result.elapsed, load_seconds=load_seconds, steps=result.steps,
    )
    g = torch.Generator().manual_seed(seed)
    group = int(torch.argmax(sizes))  # the largest held-out alphabet
    classes = torch.nonzero(val.class_groups == group).flatten()
    classes = classes[torch.randperm(len(classes), generator=g)]
    n_enrolled = max(1, min(n_enrolled, len(classes) - 1))
    enrolled, unknown = classes[:n_enrolled].tolist(), int(classes[n_enrolled])
    by_class = val.class_indices()
    gallery_path = out / "gallery.sqlite"
    # The gallery's probabilities (Platt scaling on within-alphabet pairs) and its threshold
    # (the score above which only 10% of unknown drawings are accepted by a gallery like
    # the demo's, simulated) are fitted on the alphabet's *other* characters: neither the
    # enrolled characters nor the unknown one play any part in choosing them.
    rest = classes[n_enrolled + 1 :].tolist()
    if len(rest) > n_enrolled:
        calib_set = val.subset_classes(rest)
    else:
        others = [c for c in range(val.n_classes) if int(val.class_groups[c]) != group]
        calib_set = val.subset_classes(others) if len(others) > n_enrolled else val
    i1, i2, same = sample_pairs(calib_set, 2000, seed, within_group=True)
    with torch.no_grad():
        emb = model.embed_images(calib_set.images)
        scores = model.head(emb[i1], emb[i2]).numpy()
    threshold = open_set_threshold(model, calib_set, n_enrolled=n_enrolled, fpir=0.1, seed=seed)
    alphabet = _short(val.group_names[group])
    say(f"One-shot recognition: enrolling ONE drawing of each of {n_enrolled} {alphabet} characters ...")
    say(
        f"  (acceptance threshold fitted on {calib_set.n_classes} other characters so that about 10% of "
        f"unknown drawings would be accepted)"
    )
    queries: list[tuple[int, str | None]] = []
    with Gallery.create(gallery_path, model) as gallery:
        gallery.calibrate_scores(scores, same.numpy(), eer=True, n_boot=200, source="held-out alphabets")
        gallery.set_threshold(threshold)
        # The images are already decoded (and ink-inverted) tensors, so they are embedded
        # here and handed to the gallery as embeddings (gallery.enroll would decode again).
        for c in enrolled:
            members = by_class[c][torch.randperm(len(by_class[c]), generator=g)]
            gallery.enroll_embeddings(val.class_names[c], model.embed_images(val.images[members[:1]]))
            for i in members[1 : 1 + queries_per_character].tolist():
                queries.append((i, val.class_names[c]))
        members = by_class[unknown][torch.randperm(len(by_class[unknown]), generator=g)]
        for i in members[:queries_per_character].tolist():
            queries.append((i, None))
        query_idx = torch.tensor([i for i, _ in queries])
        answers = gallery.identify_embeddings(model.embed_images(val.images[query_idx]), k=1)
    for (i, truth), ans in zip(queries, answers):
        best = ans.candidates[0]
        demo.recognitions.append(
            Recognition(query=val.paths[i], truth=truth, predicted=ans.identity, best=best.identity, probability=best.probability)
        )
    known = [r for r in demo.recognitions if r.truth is not None]
    unknown_r = [r for r in demo.recognitions if r.truth is None]
    for c in enrolled + [unknown]:
        name = val.class_names[c]
        rows = [r for r in demo.recognitions if (r.truth or val.class_names[unknown]) == name]
        if c == unknown:
            label = f"{name.split('/')[-1]} (NOT enrolled)"
        else:
            label = name.split("/")[-1]
        answers_text = ", ".join(
            f"{'✓' if r.correct else '✗'} {(r.predicted or 'unknown').split('/')[-1]}" for r in rows
        )
        what = "drawings" if c == unknown else "new drawings"
        say(f"  {label:<27} {len(rows)} {what:<12} -> {answers_text}")
    say(
        f"  Recognised {sum(r.correct for r in known)}/{len(known)} new drawings of enrolled characters; "
        f"rejected {sum(r.correct for r in unknown_r)}/{len(unknown_r)} drawings of the character that was not enrolled."
    )
    say(f"Gallery: {gallery_path}")
    demo.gallery_path = gallery_path
    return demo
