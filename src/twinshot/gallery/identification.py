"""Identification thresholds for a gallery of M people (``gallery calibrate --fpir``).

A threshold fitted on *pairs* (``--far``) controls one comparison. Identifying a stranger
compares them with every one of the M enrolled identities and accepts the best, so the
share of strangers accepted as *someone*, the false positive identification rate (FPIR),
grows with M (about ``1 - (1 - FAR) ** M`` if the comparisons were independent). This
module fits the threshold for a target FPIR at a gallery size M on labelled calibration
classes that are not the gallery:

* ``"simulated"`` (while each gallery of M leaves at least a quarter of the calibration
  classes, and 5, as strangers; or asked for with ``method="simulate"``): draw ``simulations``
  galleries of M classes (the gallery's references per identity each, see
  :func:`twinshot.evaluation.openset.draw_open_set`), query them with every other image;
  the threshold is the lowest at which at most RATE of the pooled strangers' best scores
  pass. DIR (enrolled queries accepted as the right identity) and FPIR at that threshold
  are reported with the 2.5-97.5 percentile range over the simulated galleries.
* ``"extrapolated"`` (larger M, or ``method="extrapolate"``): every calibration
  class is enrolled once per simulation and each query's scores against the *other*
  classes stand for the impostors it would meet. With ``F_q(t)`` the share of query q's
  impostor scores below ``t``, a stranger facing M impostors is accepted with probability
  ``1 - F_q(t) ** M`` and an enrolled query is identified with ``[g_q >= t] F_q(g_q) ** (M - 1)``
  (``g_q``: its own identity's score); FPIR and DIR are the means over queries. Draws of
  impostors are treated as independent, which holds better the more classes there are.

The result is stored in the gallery (key ``identification_calibration``) with the gallery
size it holds for; :func:`size_warning` says when the gallery has grown well past it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from twinshot.errors import ConfigError, DataError, TwinshotError

if TYPE_CHECKING:  # pragma: no cover
    from twinshot.evaluation.openset import OpenSetDraw, Pairwise
# twinshot.evaluation imports torch: its functions are imported where they are used, so that
# the size warning of ``gallery identify`` stays on the torch-free (ONNX) path.

META_KEY = "identification_calibration"
#: Warn when the gallery holds more than this many times the identities it was calibrated for.
GROWTH_WARNING = 1.5
METHODS = ("auto", "simulate", "extrapolate")


@dataclass(frozen=True)
class IdentificationCalibration:
    """A threshold for a target FPIR at a gallery size, and what it gives.

    Attributes:
        threshold: accept the best identity when its score (logit) is at least this.
        target_fpir: the FPIR asked for.
        gallery_size: M, the number of enrolled identities it was fitted for.
        references: references per simulated identity.
        method: ``"simulated"`` or ``"extrapolated"`` (see the module docstring).
        simulations: galleries simulated (or reference draws, when extrapolated).
        fpir, fpir_range: the FPIR at the threshold (mean, and 2.5-97.5 percentiles over simulations).
        dir, dir_range: DIR at the threshold, likewise.
        rank1: closed-set rank-1 accuracy of the enrolled queries (mean over simulations).
        n_classes, n_images: the calibration data; ``source``: where it came from.
    """

    threshold: float
    target_fpir: float
    gallery_size: int
    references: int
    method: str
    simulations: int
    fpir: float
    fpir_range: tuple[float, float]
    dir: float
    dir_range: tuple[float, float]
    rank1: float
    n_classes: int
    n_images: int
    source: str = ""
    rule: str = "max"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fpir_range"], d["dir_range"] = list(self.fpir_range), list(self.dir_range)
        d["target"] = f"fpir={self.target_fpir:g} at M={self.gallery_size}"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IdentificationCalibration":
        keys = cls.__dataclass_fields__.keys()
        values = {k: d[k] for k in keys if k in d}
        values["fpir_range"] = tuple(values["fpir_range"])
        values["dir_range"] = tuple(values["dir_range"])
        return cls(**values)


def _range(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))


def _simulate(
    embeddings: np.ndarray, labels: np.ndarray, pairwise: Pairwise, *, fpir: float, gallery_size: int,
    references: int, simulations: int, seed: int, rule: str, transform: Any = None,
) -> tuple[float, list[float], list[float], list[float]]:
    from twinshot.evaluation.openset import draw_open_set, score_draw, threshold_at_fpir

    groups = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    draws = []
    for s in range(simulations):
        rng = np.random.default_rng(seed + s)
        draw = draw_open_set(labels, groups, enrolled=gallery_size, references=references, rng=rng)
        draws.append(score_draw(embeddings, draw, pairwise, rule=rule, transform=transform))
    pooled = np.concatenate([d.best[~d.mated] for d in draws])
    t = threshold_at_fpir(pooled, fpir)
    fpirs = [float((d.best[~d.mated] >= t).mean()) for d in draws]
    dirs = [float(((d.true_rank == 0) & (d.best >= t)).sum() / d.mated.sum()) for d in draws]
    rank1 = [float((d.true_rank == 0).sum() / d.mated.sum()) for d in draws]
    return t, fpirs, dirs, rank1


def _all_enrolled(labels: np.ndarray, references: int, rng: np.random.Generator) -> OpenSetDraw:
    """Every class with a query left enrolled with ``references`` images; its other images query."""
    from twinshot.evaluation.openset import OpenSetDraw

    refs, ref_id, qs, q_id = [], [], [], []
    classes = [c for c in range(int(labels.max()) + 1) if (labels == c).sum() > references]
    for i, c in enumerate(classes):
        images = rng.permutation(np.nonzero(labels == c)[0])
        refs.append(images[:references])
        ref_id.append(np.full(references, i))
        qs.append(images[references:])
        q_id.append(np.full(images.size - references, i))
    return OpenSetDraw(
        enrolled=np.asarray(classes, dtype=np.int64), ref_index=np.concatenate(refs), ref_identity=np.concatenate(ref_id),
        query_index=np.concatenate(qs), query_identity=np.concatenate(q_id),
    )


def _extrapolate(
    embeddings: np.ndarray, labels: np.ndarray, pairwise: Pairwise, *, fpir: float, gallery_size: int,
    references: int, simulations: int, seed: int, rule: str, transform: Any = None,
) -> tuple[float, list[float], list[float], list[float]]:
    from twinshot.evaluation.openset import OpenSetDraw

    from twinshot.evaluation.openset import identity_scores

    sims = []
    for s in range(simulations):
        draw = _all_enrolled(labels, references, np.random.default_rng(seed + s))
        if draw.enrolled.size < 2:
            raise DataError("calibration needs at least 2 classes with more images than references")
        q, refs = embeddings[draw.query_index], embeddings[draw.ref_index]
        logits = pairwise(q, refs) if transform is None else transform(pairwise(q, refs), q, refs)
        per = identity_scores(logits, draw.ref_identity, draw.enrolled.size, rule)
        rows = np.arange(len(q))
        genuine = per[rows, draw.query_identity]
        impostor = np.sort(np.where(np.arange(per.shape[1])[None] == draw.query_identity[:, None], -np.inf, per), axis=1)[:, 1:]
        sims.append((genuine, impostor))
    m = gallery_size
    # per query, the share of its impostor scores strictly below its genuine score
    below_genuine = [
        np.array([np.searchsorted(row, x, side="left") for row, x in zip(imp, g)]) / imp.shape[1] for g, imp in sims
    ]

    def fpir_at(t: float) -> list[float]:
        return [float(np.mean(1.0 - (imp < t).mean(1) ** m)) for _, imp in sims]

    def rates(t: float) -> tuple[list[float], list[float], list[float]]:
        di = [float(np.mean((g >= t) * f_g ** (m - 1))) for (g, _), f_g in zip(sims, below_genuine)]
        r1 = [float(np.mean(f_g ** (m - 1))) for f_g in below_genuine]
        return fpir_at(t), di, r1

    candidates = np.unique(np.concatenate([imp.ravel() for _, imp in sims]))
    candidates = np.concatenate([candidates, [np.nextafter(candidates[-1], np.inf)]])
    lo, hi = 0, candidates.size - 1  # FPIR falls as the threshold rises: the lowest one at most ``fpir``
    while lo < hi:
        mid = (lo + hi) // 2
        if np.mean(fpir_at(float(candidates[mid]))) <= fpir:
            hi = mid
        else:
            lo = mid + 1
    t = float(candidates[lo])
    fp, di, r1 = rates(t)
    return t, fp, di, r1


def calibrate_identification(
    embeddings: np.ndarray,
    labels: np.ndarray,
    pairwise: Pairwise,
    *,
    fpir: float,
    gallery_size: int,
    references: int = 1,
    simulations: int = 20,
    seed: int = 0,
    rule: str = "max",
    source: str = "",
    method: str = "auto",
    transform: Any = None,
) -> IdentificationCalibration:
    """The threshold at which a share ``fpir`` of strangers is accepted as someone by a
    gallery of ``gallery_size`` identities, from labelled calibration embeddings
    ``(n_images, D)`` (``labels``: their classes); see the module docstring. ``transform``
    normalises reference-level scores (:meth:`twinshot.gallery.cohort.CohortNorm.transform`)."""
    if not 0.0 < fpir < 1.0:
        raise ConfigError(f"--fpir must be in (0, 1), got {fpir}")
    if gallery_size < 1 or references < 1 or simulations < 1:
        raise ConfigError(f"gallery size, references and simulations must be >= 1, got {gallery_size}, {references}, {simulations}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        raise DataError("no calibration images")
    counts = np.bincount(labels)
    usable = int((counts > references).sum())
    if usable < 2:
        raise DataError(f"calibration needs at least 2 classes with more than {references} image(s); found {usable}")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if method == "simulate" and gallery_size > usable - 1:
        raise DataError(f"cannot simulate galleries of {gallery_size} from {usable} usable classes and keep strangers")
    enough_strangers = usable - gallery_size >= max(5, usable // 4)
    simulate = method == "simulate" or (method == "auto" and enough_strangers)
    fit = _simulate if simulate else _extrapolate
    t, fpirs, dirs, rank1 = fit(
        np.asarray(embeddings, dtype=np.float32), labels, pairwise, fpir=float(fpir), gallery_size=int(gallery_size),
        references=int(references), simulations=int(simulations), seed=int(seed), rule=rule, transform=transform,
    )
    return IdentificationCalibration(
        threshold=float(t), target_fpir=float(fpir), gallery_size=int(gallery_size), references=int(references),
        method="simulated" if simulate else "extrapolated", simulations=int(simulations),
        fpir=float(np.mean(fpirs)), fpir_range=_range(fpirs), dir=float(np.mean(dirs)), dir_range=_range(dirs),
        rank1=float(np.mean(rank1)), n_classes=int(counts.size), n_images=int(labels.size), source=source, rule=rule,
    )


def _gallery_references(gallery: Any) -> int:
    records = gallery.identities()
    if not records:
        return 1
    return max(1, int(round(float(np.median([r.references for r in records])))))


def calibrate_gallery(
    gallery: Any,
    folder: str | os.PathLike,
    *,
    fpir: float,
    gallery_size: int | None = None,
    references: int | None = None,
    simulations: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> IdentificationCalibration:
    """Fit the identification threshold of ``gallery`` (a :class:`twinshot.gallery.Gallery`)
    on the labelled ``folder`` (or zip) for a target ``fpir`` at its current size (or
    ``gallery_size``), and store it: the gallery's threshold and its
    ``identification_calibration`` record. The probability calibration is left as it is.
    Scores are normalised as the gallery's stored normalisation says
    (:mod:`twinshot.gallery.scorenorm`)."""
    from twinshot.data import load_dataset
    from twinshot.gallery.embedding import embed_uint8

    size = len(gallery) if gallery_size is None else int(gallery_size)
    if size < 1:
        raise TwinshotError(f"{gallery.path}: the gallery is empty; enroll first or give --gallery-size M")
    refs = _gallery_references(gallery) if references is None else int(references)
    dataset = load_dataset(Path(folder), gallery.embedder.preprocessing, progress=progress)
    embeddings = embed_uint8(gallery.embedder, dataset.images.numpy(), batch_size=256)
    from twinshot.gallery.scorenorm import META_NORM, stored_norm

    norm = stored_norm(gallery._meta)
    if norm is not None:
        cohort_source = json.loads(gallery._meta.get(META_NORM, "{}")).get("source", "")
        if cohort_source and Path(cohort_source).resolve() == Path(folder).resolve():
            raise ConfigError(
                f"the gallery's normalisation cohort is the calibration folder {folder}: its images would be scored "
                f"against themselves; calibrate on other classes than the cohort's"
            )
    pairwise = gallery.embedder.pairwise_logits
    result = calibrate_identification(
        embeddings, dataset.labels.numpy(), pairwise, fpir=fpir, gallery_size=size,
        references=refs, simulations=simulations, seed=seed, rule=gallery.rule, source=str(folder),
        transform=None if norm is None else norm.transform(pairwise),
    )
    with gallery._lock:
        gallery._write_meta(
            {"threshold": repr(result.threshold), META_KEY: json.dumps(result.to_dict())},
            gallery._audit("calibrate", details={"target": f"fpir={fpir}", "threshold": result.threshold, "source": str(folder)}),
        )
    return result


def calibration_target(gallery: Any) -> str | None:
    """What the gallery's threshold was fitted for: ``"fpir=0.1 at M=60"``, a pair target
    (``"far=0.001"``, ``"eer"``) or ``None`` (not calibrated)."""
    stored = stored_calibration(gallery._meta.get(META_KEY))
    if stored is not None:
        return str(stored.to_dict()["target"])
    report = gallery.calibration_report
    return report.target if report is not None else None


def stored_calibration(meta_value: str | None) -> IdentificationCalibration | None:
    """The stored record (a JSON string from the gallery's metadata), if any."""
    if not meta_value:
        return None
    try:
        return IdentificationCalibration.from_dict(json.loads(meta_value))
    except (ValueError, KeyError, TypeError):
        return None


def size_warning(n_identities: int, calibration: IdentificationCalibration | None) -> str | None:
    """A one-line warning when a gallery of ``n_identities`` has outgrown the size its
    threshold was calibrated for (more than :data:`GROWTH_WARNING` times), else ``None``."""
    if calibration is None or n_identities <= GROWTH_WARNING * calibration.gallery_size:
        return None
    factor = n_identities / calibration.gallery_size
    return (
        f"warning: the threshold was calibrated for {calibration.gallery_size} identities at FPIR "
        f"{calibration.target_fpir:g}; the gallery now holds {n_identities} ({factor:.1f}x), so more strangers "
        f"will be accepted: run `twinshot gallery calibrate --fpir` again"
    )


def gallery_size_warning(path: str | os.PathLike) -> str | None:
    """:func:`size_warning` for the gallery file at ``path`` (reads the file alone)."""
    from twinshot.gallery.stores import open_store

    store = open_store(path)
    try:
        meta = store.meta()
        n = store.count_identities()
    finally:
        store.close()
    return size_warning(n, stored_calibration(meta.get(META_KEY)))


__all__ = [
    "GROWTH_WARNING", "META_KEY", "IdentificationCalibration", "calibrate_gallery", "calibrate_identification", "calibration_target",
    "gallery_size_warning", "size_warning", "stored_calibration",
]
