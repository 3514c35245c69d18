"""``build_report``: a model's verification report on labelled pairs or a labelled folder.

Writes into ``out``:

* ``report.html``: one self-contained page (every figure and thumbnail inlined as base64 PNG);
* ``roc.png``, ``det.png``, ``scores.png``, ``embeddings.png``, ``false_accepts.png``,
  ``false_rejects.png``: the same figures as files;
* ``report.json``: every number on the page (and the curves' points).

Each file is written to a temporary name and renamed, so a file is never half-written.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twinshot.errors import ConfigError, DataError

FILES = ("report.html", "report.json", "roc.png", "det.png", "scores.png", "embeddings.png", "false_accepts.png", "false_rejects.png")


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and its numbers (``summary`` is what ``report.json`` holds)."""

    out: Path
    html: Path
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        s = self.summary
        return {
            "out": str(self.out),
            "html": str(self.html),
            "files": [str(self.out / f) for f in FILES] + ([str(self.out / "open_set_det.png")] if s.get("open_set") else []),
            "model": s["model"],
            "n_images": s["n_images"],
            "n_classes": s["n_classes"],
            **{k: s["verification"][k] for k in ("auc", "eer", "eer_threshold", "n_genuine", "n_impostor")},
            **{k: s["operating_point"][k] for k in ("threshold", "target_far", "far", "far_ci95", "frr", "frr_ci95", "far_exact95", "frr_exact95")},
            "episodes": s.get("episodes"),
            "open_set": s.get("open_set"),
        }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _display(image: np.ndarray, invert: bool) -> np.ndarray:
    """uint8 ``(C, H, W)`` model input -> ``(H, W)`` grey for display (ink dark again)."""
    a = image.astype(np.float32).mean(axis=0) if image.shape[0] > 1 else image[0].astype(np.float32)
    a = a.astype(np.uint8)
    return 255 - a if invert else a


def _thumb_png(a: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def embedding_map(embeddings: np.ndarray, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates ``(N, 2)`` of ``embeddings (N, D)`` and the method used: ``"pca"``,
    ``"tsne"`` (scikit-learn), or ``"auto"`` (t-SNE up to 2,000 images, else PCA)."""
    if method not in ("auto", "pca", "tsne"):
        raise ConfigError(f"map method must be auto, pca or tsne, got {method!r}")
    n = embeddings.shape[0]
    if method == "auto":
        method = "tsne" if 5 <= n <= 2000 else "pca"
    x = np.asarray(embeddings, dtype=np.float64)
    if n < 3 or x.shape[1] < 2:
        pts = np.zeros((n, 2))
        pts[:, : min(2, x.shape[1])] = x[:, : min(2, x.shape[1])]
        return pts, "pca"
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x), "tsne"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x), "pca"


def build_report(
    model_ref: str | os.PathLike,
    out: str | os.PathLike,
    *,
    pairs: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    far: float = 1e-3,
    n_way: int | None = None,
    n_shot: int = 1,
    episodes: int = 1000,
    worst: int = 8,
    map_method: str = "auto",
    n_boot: int = 1000,
    max_pairs: int = 500_000,
    seed: int = 0,
    open_set: int | None = None,
    progress: bool = False,
) -> ReportResult:
    """Evaluate a model on labelled pairs or a labelled folder and write the report.

    Args:
        model_ref: a shipped model name, checkpoint or run directory (``load_model``).
        out: the report folder (created; files in it are replaced).
        pairs: a ``path1,path2,same`` CSV (exactly one of ``pairs`` and ``folder``).
        folder: a folder (or zip) of class folders: every pair of its images is scored,
            and N-way ``n_shot``-shot accuracy is measured over ``episodes`` seeded episodes.
        far: target false accept rate; the threshold is the lowest score whose FAR on
            these pairs is at most ``far`` (``twinshot.gallery.calibration``).
        n_way: classes per episode (default: ``min(10, classes)``).
        worst: how many worst false accepts / false rejects to show.
        map_method: ``"auto"``, ``"pca"`` or ``"tsne"`` for the embedding map.
        n_boot: bootstrap draws for the FAR/FRR intervals.
        max_pairs: folder mode: above this many pairs, impostors are subsampled (seeded).
        seed: seeds the episodes, the subsampling, the bootstrap and t-SNE.
        open_set: folder mode: also run the open-set protocol with this many enrolled classes
            (:func:`twinshot.evaluation.openset.evaluate_open_set`, 5 draws, FPIR 1% and 10%)
            and add its figures and open-set DET curve (``open_set_det.png``).

    Returns:
        :class:`ReportResult` with the paths and all numbers.

    Raises:
        TwinshotError: for a bad input (named) or an unusable option.
    """
    from twinshot.evaluation import metrics
    from twinshot.gallery.calibration import calibrate_scores
    from twinshot.models import fingerprint, load_model
    from twinshot.report import figures
    from twinshot.report.html import render_page
    from twinshot.report.scores import folder_scores, pairs_scores

    if (pairs is None) == (folder is None):
        raise ConfigError("give exactly one of --pairs PAIRS.csv or --folder FOLDER")
    if not 0.0 < far < 1.0:
        raise ConfigError(f"--far must be in (0, 1), got {far}")
    if worst < 0:
        raise ConfigError(f"--worst must be >= 0, got {worst}")
    model = load_model(model_ref)
    if folder is not None:
        data = folder_scores(model, folder, max_pairs=max_pairs, seed=seed, progress=progress)
        source_kind, source = "folder", str(folder)
    else:
        data = pairs_scores(model, pairs, progress=progress)  # type: ignore[arg-type]
        source_kind, source = "pairs", str(pairs)
    scores, same = data.scores, data.same

    auc = metrics.auc(scores, same)
    eer, eer_threshold = metrics.equal_error_rate(scores, same)
    cal = calibrate_scores(scores, same, far=far, n_boot=n_boot, seed=seed, source=source)
    threshold = cal.threshold
    tar = 1.0 - cal.frr
    fars = [f for f in (1e-4, 1e-3, 1e-2, 1e-1) if f * (~same).sum() >= 1]
    tar_at = {f"{f:g}": metrics.tar_at_far(scores, same, f) for f in fars}

    episode_summary = None
    if data.dataset is not None:
        from twinshot.evaluation import evaluate_episodes

        counts = np.bincount(data.image_labels, minlength=len(data.class_names))
        usable = int((counts >= n_shot + 1).sum())
        way = min(10, usable) if n_way is None else n_way
        if way >= 2 and usable >= way:
            usable_classes = np.nonzero(counts >= n_shot + 1)[0]
            dataset = data.dataset if usable == len(counts) else data.dataset.subset_classes(usable_classes.tolist())
            r = evaluate_episodes(model, dataset, n_way=way, n_shot=n_shot, n_query=1, episodes=episodes, seed=seed, progress=progress)
            episode_summary = {
                "n_way": way, "n_shot": n_shot, "n_query": 1, "episodes": episodes,
                "accuracy": r.accuracy, "ci95": r.ci95 if math.isfinite(r.ci95) else None,
            }
        elif n_way is not None:
            raise DataError(f"{folder}: {n_way}-way {n_shot}-shot episodes need {n_way} classes with {n_shot + 1} images; {usable} have")

    open_set_summary = None
    if open_set is not None:
        if data.dataset is None:
            raise ConfigError("--open-set needs --folder (labelled classes to enroll and query)")
        from twinshot.evaluation.openset import evaluate_open_set

        open_set_summary = evaluate_open_set(model, data.dataset, enrolled=open_set, seeds=5, seed=seed, fpirs=(0.01, 0.1)).to_dict()

    # worst errors
    invert = bool(model.preprocessing.invert)
    imp = np.nonzero(~same)[0]
    gen = np.nonzero(same)[0]
    fa_idx = imp[np.argsort(-scores[imp], kind="stable")]
    fa_idx = fa_idx[scores[fa_idx] >= threshold][:worst]
    fr_idx = gen[np.argsort(scores[gen], kind="stable")]
    fr_idx = fr_idx[scores[fr_idx] < threshold][:worst]
    images = data.images.numpy()
    worst_rows: dict[str, list[dict[str, Any]]] = {}
    thumbs: dict[str, list[tuple[bytes, bytes]]] = {}
    grids: dict[str, bytes] = {}
    for key, idx, title in (("false_accepts", fa_idx, "worst false accepts"), ("false_rejects", fr_idx, "worst false rejects")):
        rows, th, grid = [], [], []
        for k in idx.tolist():
            a, b = int(data.index1[k]), int(data.index2[k])
            da, db = _display(images[a], invert), _display(images[b], invert)
            rows.append({
                "score": float(scores[k]), "path1": data.names[a], "path2": data.names[b],
                "class1": data.class_names[int(data.image_labels[a])], "class2": data.class_names[int(data.image_labels[b])],
            })
            th.append((_thumb_png(da), _thumb_png(db)))
            grid.append((da, db, f"{scores[k]:.3f}"))
        worst_rows[key], thumbs[key] = rows, th
        grids[key] = figures.pairs_grid_png(grid, title if grid else f"no {title[6:]} at this threshold")

    points, method = embedding_map(data.embeddings, method=map_method, seed=seed)
    figs = {
        "roc": figures.roc_png(scores, same, auc=auc, eer=eer, far=cal.far, tar=tar),
        "det": figures.det_png(scores, same, eer=eer, far=cal.far, frr=cal.frr),
        "scores": figures.histogram_png(scores, same, threshold=threshold, eer_threshold=eer_threshold),
        "embeddings": figures.embedding_map_png(points, data.image_labels, data.class_names, method=method),
    }
    if open_set_summary is not None:
        o = open_set_summary
        figs["open_set_det"] = figures.open_set_det_png(
            o["det"]["fpir"], o["det"]["fnir"], enrolled=o["enrolled"], marks={k: v["mean"] for k, v in o["dir_at_fpir"].items()}
        )
    roc = metrics.roc_curve(scores, same)
    step = max(1, len(roc.far) // 500)
    hist_edges = np.linspace(float(scores.min()), float(scores.max()), 61)
    summary: dict[str, Any] = {
        "model": str(model_ref),
        "fingerprint": fingerprint(model),
        "source_kind": source_kind,
        "source": source,
        "n_images": int(len(data.names)),
        "n_classes": int(len(data.class_names)),
        "verification": {
            "auc": auc, "eer": eer, "eer_threshold": eer_threshold,
            "n_genuine": int(same.sum()), "n_impostor": int((~same).sum()), "tar_at_far": tar_at,
        },
        "operating_point": {
            "target_far": far, "threshold": threshold, "far": cal.far, "frr": cal.frr,
            "far_ci95": list(cal.far_ci95), "frr_ci95": list(cal.frr_ci95), "n_boot": n_boot,
            "far_exact95": list(cal.far_exact95), "frr_exact95": list(cal.frr_exact95),
        },
        "episodes": episode_summary,
        "open_set": open_set_summary,
        "worst": worst_rows,
        "curves": {
            "roc": {"far": roc.far[::step].tolist(), "tar": roc.tar[::step].tolist(), "threshold": roc.thresholds[::step].tolist()},
            "histogram": {
                "edges": hist_edges.tolist(),
                "genuine": np.histogram(scores[same], bins=hist_edges)[0].tolist(),
                "impostor": np.histogram(scores[~same], bins=hist_edges)[0].tolist(),
            },
        },
        "embedding_map": {
            "method": method,
            "points": np.round(points, 4).tolist(),
            "labels": data.image_labels.tolist(),
            "class_names": data.class_names,
        },
    }
    summary = _clean(summary)
    page = render_page(summary, figs, thumbs)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name, png in {**figs, **grids}.items():
        _write_atomic(out / f"{name}.png", png)
    _write_atomic(out / "report.json", (json.dumps(summary, indent=1) + "\n").encode())
    _write_atomic(out / "report.html", page.encode("utf-8"))
    return ReportResult(out=out, html=out / "report.html", summary=summary)
