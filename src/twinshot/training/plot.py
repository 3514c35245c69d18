"""The PNG plot of a run: training loss and validation accuracy against steps."""

from __future__ import annotations

import io
from pathlib import Path

from twinshot.training.checkpoint import atomic_write_bytes
from twinshot.training.metrics import read_csv


def plot_run(run_dir: str | Path, path: str | Path | None = None) -> Path | None:
    """Draw ``run_dir/training.png`` from ``metrics.csv`` and ``epochs.csv``.

    Returns the path, or ``None`` when matplotlib is not installed (it is an optional
    dependency, in the ``eval`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    run_dir = Path(run_dir)
    path = Path(path) if path else run_dir / "training.png"
    steps = read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else []
    epochs = read_csv(run_dir / "epochs.csv") if (run_dir / "epochs.csv").is_file() else []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if steps:
        ax1.plot([int(r["step"]) for r in steps], [float(r["loss"]) for r in steps], lw=1)
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax1.set_title("loss")
    ax1.grid(alpha=0.3)
    val = [r for r in epochs if r.get("val_accuracy")]
    if val:
        x = [int(r["step"]) for r in val]
        y = [float(r["val_accuracy"]) for r in val]
        ci = [float(r["val_ci95"] or 0.0) for r in val]
        ax2.errorbar(x, y, yerr=ci, marker="o", ms=3, capsize=2)
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("validation (N-way one-shot)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
