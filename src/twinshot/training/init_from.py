"""Start a training run from existing weights (``run.init_from``): a shipped model's name
(``"omniglot"``) or a training run directory (its ``best/`` checkpoint, else ``last/``),
or a checkpoint directory.

Only the weights are taken (the encoder's, the head's and BatchNorm's running
statistics); the optimiser, the schedule, the sampler and the augmentation start fresh,
as in a new run. The new run's ``[model]`` must describe the same model as the source's
``model.json``, field by field; the source is recorded in the run's checkpoints
(``model.json``'s ``extra.init_from``: the reference as given, the directory it resolved
to and the SHA-256 of its ``model.safetensors``), so the run can be reproduced even after
a shipped model of that name has changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinshot.errors import ConfigError, TwinshotError


@dataclass(frozen=True)
class InitSource:
    """Where a run's initial weights come from.

    Attributes:
        ref: the reference as given in ``run.init_from``.
        directory: the checkpoint directory it resolved to.
        sha256: SHA-256 (hex) of the directory's ``model.safetensors`` file.
        spec: the source's model spec, as a dict (``ModelSpec.to_dict``).
    """

    ref: str
    directory: Path
    sha256: str
    spec: dict[str, Any]

    def record(self) -> dict[str, str]:
        """What the run stores about its source (``model.json``'s ``extra.init_from``)."""
        return {"ref": self.ref, "path": str(self.directory), "sha256": self.sha256}


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes (what ``sha256sum`` prints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_init_source(ref: str) -> InitSource:
    """The checkpoint ``ref`` names (see :func:`twinshot.models.io.resolve_model_dir`).

    Raises:
        ConfigError: one line naming ``run.init_from`` when ``ref`` is no model.
    """
    from twinshot.models.io import SPEC, WEIGHTS, resolve_model_dir
    from twinshot.models.siamese import ModelSpec

    try:
        directory = resolve_model_dir(ref)
    except TwinshotError as exc:
        raise ConfigError(f"run.init_from: {exc}") from None
    try:
        meta = json.loads((directory / SPEC).read_text())
        spec = ModelSpec.from_dict(meta["spec"]).to_dict()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"run.init_from: {directory / SPEC} is not a valid model description ({exc})") from None
    if not (directory / WEIGHTS).is_file():
        raise ConfigError(f"run.init_from: {directory} has no {WEIGHTS}")
    return InitSource(ref=ref, directory=directory, sha256=file_sha256(directory / WEIGHTS), spec=spec)


def _first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first dotted key where ``a`` and ``b`` differ (lists and tuples alike)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}", a.get(key, "(absent)"), b.get(key, "(absent)")
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return None if list(a) == list(b) else (path, list(a), list(b))
    return None if a == b else (path, a, b)


def check_same_model(spec: dict[str, Any], source: InitSource) -> None:
    """Raise a one-line :class:`ConfigError` unless the run's model ``spec`` (a
    ``ModelSpec.to_dict()``) equals the source's, naming the first differing field."""
    found = _first_difference(spec, source.spec, "model")
    if found is not None:
        key, mine, theirs = found
        own = source.directory / "config.toml"
        hint = f" (start from its settings with --config {own})" if own.is_file() else ""
        raise ConfigError(
            f"run.init_from: {key} differs: this run's config has {mine!r}, "
            f"{source.ref!r} ({source.directory / 'model.json'}) has {theirs!r}; "
            f"the new run's [model] must match its source's{hint}"
        )


def load_initial_weights(model: Any, source: InitSource) -> None:
    """Copy the source's weights into ``model`` (a freshly built model of the same spec)."""
    from twinshot.models.io import WEIGHTS, load_weights_into

    load_weights_into(model, source.directory / WEIGHTS, "does not fit the model of this run (run.init_from)", ConfigError)
