"""Re-measure a trained model on the classes its own run held out (the stand-in for
Lake's evaluation set), with fresh episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twinshot.errors import TwinshotError


def evaluate_heldout(
    model_ref: str | Path,
    *,
    data: list[str] | None = None,
    episodes: int = 2000,
    seed: int = 1,
    progress: bool = False,
) -> Any:
    """Within-group N-way K-shot accuracy of a model on its run's validation classes.

    The run's ``config.toml`` (saved in every checkpoint and shipped model) gives the data,
    the seeded split and the protocol; ``seed`` draws new episodes (the run chose its best
    epoch on ``validation.seed``'s episodes, so a different seed gives an unbiased figure).

    Args:
        model_ref: a run directory, a checkpoint or a shipped model's name.
        data: replaces ``data.sources`` (e.g. where the dataset lives on this machine).
        episodes: number of episodes.
        seed: seed of the episodes.

    Returns:
        :class:`twinshot.evaluation.episodes.EpisodeResult`.
    """
    from twinshot.evaluation.episodes import evaluate_episodes

    model, val, config = heldout_dataset(model_ref, data=data, progress=progress)
    v = config.validation
    return evaluate_episodes(
        model, val, n_way=v.n_way, n_shot=v.n_shot, n_query=v.n_query, episodes=episodes, seed=seed,
        within_group=v.within_group, progress=progress, skip_small=True,
    )


def heldout_dataset(model_ref: str | Path, *, data: list[str] | None = None, progress: bool = False) -> tuple[Any, Any, Any]:
    """``(model, held-out classes, run config)``: the model and the validation classes of its
    own run (its ``config.toml``: data, seeded split, no rotated copies), as
    :class:`twinshot.data.LabelledImages` at the model's preprocessing.

    Args:
        model_ref: a run directory, a checkpoint or a shipped model's name.
        data: replaces ``data.sources`` (e.g. where the dataset lives on this machine).
    """
    from twinshot.models import load_model, resolve_model_dir
    from twinshot.training.config import load_config
    from twinshot.training.data import prepare_data

    directory = resolve_model_dir(model_ref)
    path = directory / "config.toml"
    if not path.is_file():
        raise TwinshotError(f"{directory}: no config.toml, so the held-out classes are unknown")
    overrides: dict[str, Any] = {"data.rotations": []}
    if data:
        overrides["data.sources"] = list(data)
    config = load_config(path, overrides=overrides)
    if config.data.val <= 0:
        raise TwinshotError(f"{directory}: its run held out no classes (data.val = 0)")
    model = load_model(directory)
    val = prepare_data(config.data, model.preprocessing, progress=progress).val
    return model, val, config
