"""The report's figures, drawn with matplotlib's Agg backend and returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from twinshot.evaluation import metrics

GENUINE = "#2a9d8f"
IMPOSTOR = "#e76f51"
ACCENT = "#264653"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def roc_png(scores: np.ndarray, same: np.ndarray, *, auc: float, eer: float, far: float, tar: float) -> bytes:
    """ROC (TAR against FAR, log FAR axis) with the EER point and the operating point."""
    plt = _pyplot()
    roc = metrics.roc_curve(scores, same)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    n_imp = max(1, int((~same).sum()))
    floor = 0.5 / n_imp
    ax.plot(np.maximum(roc.far, floor), roc.tar, color=ACCENT, lw=2, label=f"ROC (AUC = {auc:.4f})")
    ax.plot([max(eer, floor)], [1 - eer], "o", color=IMPOSTOR, ms=8, label=f"EER = {100 * eer:.2f}%")
    ax.plot([max(far, floor)], [tar], "s", color=GENUINE, ms=8, label=f"threshold: FAR {100 * far:.3g}%, TAR {100 * tar:.2f}%")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("ROC")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def det_png(scores: np.ndarray, same: np.ndarray, *, eer: float, far: float, frr: float) -> bytes:
    """DET curve: FRR against FAR on normal-deviate axes, EER and operating point marked."""
    from scipy.stats import norm

    plt = _pyplot()
    roc = metrics.roc_curve(scores, same)
    n_imp, n_gen = max(1, int((~same).sum())), max(1, int(same.sum()))
    lo = min(0.5 / n_imp, 0.5 / n_gen, 1e-3)
    clip = lambda r: np.clip(r, lo, 1 - 1e-6)  # noqa: E731
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.plot(norm.ppf(clip(roc.far)), norm.ppf(clip(1 - roc.tar)), color=ACCENT, lw=2, label="DET")
    ax.plot([norm.ppf(clip(eer))], [norm.ppf(clip(eer))], "o", color=IMPOSTOR, ms=8, label=f"EER = {100 * eer:.2f}%")
    ax.plot([norm.ppf(clip(far))], [norm.ppf(clip(frr))], "s", color=GENUINE, ms=8, label=f"threshold: FAR {100 * far:.3g}%, FRR {100 * frr:.2f}%")
    ticks = np.array([1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8])
    ticks = ticks[ticks >= lo]
    labels = [f"{100 * t:g}%" for t in ticks]
    ax.set_xticks(norm.ppf(ticks), labels)
    ax.set_yticks(norm.ppf(ticks), labels)
    ax.set_xlim(norm.ppf(lo), norm.ppf(0.8))
    ax.set_ylim(norm.ppf(lo), norm.ppf(0.8))
    ax.plot(ax.get_xlim(), ax.get_xlim(), ls=":", color="grey", lw=1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("false reject rate")
    ax.set_title("DET")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def open_set_det_png(fpir: Sequence[float], fnir: Sequence[float], *, enrolled: int, marks: dict[str, float]) -> bytes:
    """Open-set DET: FNIR (1 - DIR) against FPIR on log axes, the target FPIRs marked."""
    plt = _pyplot()
    x, y = np.asarray(fpir, float), np.clip(np.asarray(fnir, float), 1e-3, 1.0)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.plot(x, y, color=ACCENT, lw=2, label=f"{enrolled} enrolled (mean over draws)")
    for k, v in marks.items():
        ax.plot([float(k)], [max(1e-3, 1.0 - v)], "o", color=IMPOSTOR, ms=7)
        ax.annotate(f"DIR {100 * v:.1f}% at FPIR {float(k):g}", (float(k), max(1e-3, 1.0 - v)), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false positive identification rate (strangers accepted)")
    ax.set_ylabel("false negative identification rate (1 - DIR)")
    ax.set_title("Open-set DET")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def histogram_png(scores: np.ndarray, same: np.ndarray, *, threshold: float, eer_threshold: float) -> bytes:
    """Genuine and impostor score histograms (densities) with the thresholds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bins = np.linspace(float(scores.min()), float(scores.max()), 60) if scores.max() > scores.min() else 10
    ax.hist(scores[~same], bins=bins, density=True, alpha=0.6, color=IMPOSTOR, label=f"impostor ({int((~same).sum())})")
    ax.hist(scores[same], bins=bins, density=True, alpha=0.6, color=GENUINE, label=f"genuine ({int(same.sum())})")
    ax.axvline(threshold, color=ACCENT, lw=2, label=f"threshold {threshold:.3g}")
    ax.axvline(eer_threshold, color=ACCENT, lw=1, ls="--", label=f"EER threshold {eer_threshold:.3g}")
    ax.set_xlabel("score (logit, higher is more alike)")
    ax.set_ylabel("density")
    ax.set_title("Score distributions")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def embedding_map_png(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, method: str) -> bytes:
    """2-D map of embeddings ``points (N, 2)`` coloured by class (legend up to 20 classes)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    n = len(class_names)
    cmap = plt.get_cmap("tab20" if n <= 20 else "gist_ncar")
    for c in range(n):
        m = labels == c
        if m.any():
            ax.scatter(points[m, 0], points[m, 1], s=16, color=cmap(c / max(1, n - 1) if n > 20 else c), label=class_names[c] if n <= 20 else None)
    if n <= 20:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(f"Embeddings ({method.upper()}, {len(points)} images, {n} classes)")
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def pairs_grid_png(rows: Sequence[tuple[np.ndarray, np.ndarray, str]], title: str) -> bytes:
    """A grid of image pairs: each row ``(image1 (H, W), image2 (H, W), caption)``, uint8 grey."""
    plt = _pyplot()
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 2, figsize=(3.2, 1.7 * n), squeeze=False)
    for r in range(n):
        for c in range(2):
            axes[r][c].axis("off")
        if r < len(rows):
            a, b, caption = rows[r]
            axes[r][0].imshow(a, cmap="gray", vmin=0, vmax=255)
            axes[r][1].imshow(b, cmap="gray", vmin=0, vmax=255)
            axes[r][0].set_title(caption, fontsize=8, loc="left")
    fig.suptitle(title, fontsize=10)
    return _png(fig)
