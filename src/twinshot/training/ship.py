"""Copy a finished run's best model into a self-describing folder, as shipped in
``twinshot/pretrained/<name>/``: the weights, ``model.json`` (with the validation metrics,
the exact command and notes), the resolved config and the training logs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from twinshot.errors import TwinshotError
from twinshot.training.checkpoint import atomic_write_text, checkpoint_dir

#: Files of the run copied beside the model.
LOGS = ("config.toml", "metrics.csv", "epochs.csv", "summary.json", "training.png")


def export_pretrained(run_dir: str | Path, dest: str | Path, *, command: str, notes: dict[str, Any] | None = None) -> Path:
    """Write ``dest/`` (replacing it) from ``run_dir/best``.

    Args:
        run_dir: a finished training run.
        dest: the folder to create, e.g. ``src/twinshot/pretrained/omniglot``.
        command: the exact command that produced the run (stored in ``model.json``).
        notes: more facts for ``model.json``'s ``extra`` (measured throughput, caveats).
    """
    run_dir, dest = Path(run_dir), Path(dest)
    best = checkpoint_dir(run_dir, "best")
    if best is None:
        raise TwinshotError(f"{run_dir}: no best/ checkpoint to export")
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(best / "model.safetensors", tmp / "model.safetensors")
    meta = json.loads((best / "model.json").read_text())
    meta["extra"] = {**meta.get("extra", {}), "command": command, **(notes or {})}
    atomic_write_text(tmp / "model.json", json.dumps(meta, indent=2) + "\n")
    for name in LOGS:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, tmp / name)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
