"""Thresholds and probabilities you can trust, fitted on labelled pairs that are not the gallery.

Scores are head **logits** (higher is more alike); a pair is accepted as "same" when
``score >= threshold``.

* :func:`fit_threshold` picks the threshold for a target false accept rate (the lowest
  threshold whose FAR on the calibration pairs is at most the target) or at the equal error
  rate, using :mod:`twinshot.evaluation.metrics` (checked against scikit-learn's ROC).
* :func:`bootstrap_rates` gives 95% intervals for FAR and FRR **at that fixed threshold**:
  resampling the impostor (genuine) pairs with replacement and counting accepts (rejects)
  is drawing from a binomial with the observed rate, which is what is done, seeded.
  :func:`exact_interval` gives the Clopper-Pearson interval of the same rate, which stays
  honest where the bootstrap cannot: with no error observed the bootstrap interval is
  ``[0, 0]``, the exact one ``[0, 3.7 / n]`` (a target of FAR 1e-4 on 2,000 impostor
  pairs: the difference between "certainly zero" and "at most 0.18%").
* :class:`Calibration` maps a score to a probability: ``"platt"`` (logistic regression on
  the score, Platt 1999, with his smoothed targets so separable data stay finite),
  ``"isotonic"`` (the monotone step fit of pool-adjacent-violators, interpolated as
  scikit-learn does), or ``"none"`` (the model's own ``sigmoid(logit)``).

The FAR reported for a threshold fitted on the same pairs is optimistic by construction
(it is at most the target); use a large calibration set, or check on held-out pairs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twinshot.errors import ConfigError, DataError

CALIBRATION_METHODS = ("platt", "isotonic", "none")
#: Threshold (a logit) of a gallery not yet calibrated: the model's own probability 0.5.
DEFAULT_THRESHOLD = 0.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass(frozen=True)
class Calibration:
    """A monotone map from score (logit) to the probability that a pair shows one identity.

    Attributes:
        method: ``"platt"``, ``"isotonic"`` or ``"none"``.
        a, b: Platt's ``p = sigmoid(a * score + b)`` (``"none"`` is ``a=1, b=0``).
        x, y: isotonic breakpoints (scores increasing, probabilities non-decreasing);
            ``p`` is interpolated linearly between them and clipped outside.
    """

    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(f"unknown calibration method {self.method!r}; valid: {', '.join(CALIBRATION_METHODS)}")
        if self.method == "isotonic" and (len(self.x) == 0 or len(self.x) != len(self.y)):
            raise ConfigError("isotonic calibration needs as many breakpoints x as y, at least one")

    def probability(self, scores: np.ndarray | float) -> np.ndarray:
        """Probabilities (float64, same shape as ``scores``); ``-inf`` scores give 0."""
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(s, np.asarray(self.x), np.asarray(self.y))
        else:
            with np.errstate(invalid="ignore"):
                p = _sigmoid(self.a * s + self.b)
        return np.where(np.isneginf(s), 0.0, p)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a, "b": self.b, "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(
            method=d.get("method", "none"),
            a=float(d.get("a", 1.0)),
            b=float(d.get("b", 0.0)),
            x=tuple(float(v) for v in d.get("x", ())),
            y=tuple(float(v) for v in d.get("y", ())),
        )


def _check_pairs(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    same = np.asarray(same).ravel()
    if same.dtype != np.bool_:
        raise DataError("`same` must be boolean (True: the pair shows one identity)")
    if scores.shape != same.shape:
        raise DataError(f"scores and same differ in length ({scores.size} vs {same.size})")
    if not same.any() or same.all():
        raise DataError(
            f"calibration needs both genuine and impostor pairs; got {int(same.sum())} genuine "
            f"and {int((~same).sum())} impostor"
        )
    if not np.all(np.isfinite(scores)):
        raise DataError("calibration scores contain NaN or infinite values")
    return scores, same


def fit_platt(scores: np.ndarray, same: np.ndarray, *, smooth: bool = True, max_iter: int = 100) -> Calibration:
    """Platt scaling: the logistic regression ``p = sigmoid(a * score + b)`` by Newton's method.

    Args:
        scores: ``(P,)`` logits.
        same: ``(P,)`` bool labels.
        smooth: use Platt's targets ``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)`` instead of
            1 and 0, which keeps ``a`` finite on perfectly separated scores. ``False`` is
            the plain maximum-likelihood fit (scikit-learn's unpenalised LogisticRegression).
    """
    s, y = _check_pairs(scores, same)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0)) if smooth else y.astype(np.float64)
    mu, sd = s.mean(), s.std() or 1.0
    z = (s - mu) / sd  # standardise for a well-conditioned Newton iteration
    w = np.zeros(2)
    prior = min(max(t.mean(), 1e-6), 1 - 1e-6)
    w[1] = math.log(prior / (1 - prior))
    X = np.stack([z, np.ones_like(z)], 1)

    def loss(w: np.ndarray) -> float:
        m = X @ w
        return float(np.sum(np.logaddexp(0.0, m) - t * m))

    current = loss(w)
    for _ in range(max_iter):
        p = _sigmoid(X @ w)
        grad = X.T @ (p - t)
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        lr = 1.0
        while lr > 1e-10:  # backtracking line search keeps every step a descent
            cand = w - lr * step
            new = loss(cand)
            if new <= current + 1e-12:
                break
            lr /= 2
        w, previous, current = cand, current, new
        if abs(previous - current) < 1e-12 * max(1.0, abs(current)) and np.max(np.abs(lr * step)) < 1e-9:
            break
    a = w[0] / sd
    return Calibration("platt", a=float(a), b=float(w[1] - a * mu))


def _pav(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing fit of ``y`` (weighted least squares)."""
    values: list[float] = []
    wsum: list[float] = []
    sizes: list[int] = []
    for v, w in zip(y.tolist(), weights.tolist()):
        values.append(v)
        wsum.append(w)
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w2 = wsum[-2] + wsum[-1]
            values[-2] = (values[-2] * wsum[-2] + values[-1] * wsum[-1]) / w2
            wsum[-2] = w2
            sizes[-2] += sizes[-1]
            values.pop(), wsum.pop(), sizes.pop()
    return np.repeat(np.array(values), sizes)


def fit_isotonic(scores: np.ndarray, same: np.ndarray) -> Calibration:
    """Isotonic calibration: the non-decreasing step function of the score that best fits
    the labels (pool-adjacent-violators on the distinct scores, ties averaged), kept as the
    breakpoints where it changes; probabilities are interpolated between them."""
    s, y = _check_pairs(scores, same)
    xs, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ymean = np.bincount(inverse, weights=y.astype(np.float64)) / counts
    fitted = _pav(ymean, counts.astype(np.float64))
    keep = np.ones(xs.size, bool)
    if xs.size > 2:  # drop points interior to a flat run: interpolation is unchanged
        keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return Calibration("isotonic", x=tuple(xs[keep].tolist()), y=tuple(fitted[keep].tolist()))


def fit_calibration(scores: np.ndarray, same: np.ndarray, method: str = "platt") -> Calibration:
    """Fit ``method`` (``"platt"``, ``"isotonic"`` or ``"none"``) on labelled scores."""
    if method == "platt":
        return fit_platt(scores, same)
    if method == "isotonic":
        return fit_isotonic(scores, same)
    if method == "none":
        _check_pairs(scores, same)
        return Calibration("none")
    raise ConfigError(f"unknown calibration method {method!r}; valid: {', '.join(CALIBRATION_METHODS)}")


def expected_calibration_error(probabilities: np.ndarray, same: np.ndarray, n_bins: int = 15) -> float:
    """ECE: over ``n_bins`` equal-width probability bins, the mean absolute gap between the
    predicted probability and the observed frequency of "same", weighted by bin size."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(same, dtype=np.float64).ravel()
    if p.size == 0 or p.size != y.size:
        raise DataError("ECE needs as many labels as probabilities, at least one")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf = np.bincount(bins, weights=p, minlength=n_bins)
    acc = np.bincount(bins, weights=y, minlength=n_bins)
    nz = count > 0
    return float(np.sum(np.abs(acc[nz] - conf[nz])) / p.size)


def fit_threshold(scores: np.ndarray, same: np.ndarray, *, far: float | None = None, eer: bool = False) -> float:
    """The score threshold for a target false accept rate (the lowest threshold whose FAR
    is at most ``far``) or, with ``eer=True``, at the equal error rate. Exactly one of them."""
    if (far is None) == (not eer):
        raise ConfigError("give exactly one of a target false accept rate (--far RATE) or --eer")
    s, y = _check_pairs(scores, same)
    if eer:
        from twinshot.evaluation import metrics

        return metrics.equal_error_rate(s, y)[1]
    if not 0.0 <= float(far) < 1.0:  # type: ignore[arg-type]
        raise ConfigError(f"target false accept rate must be in [0, 1), got {far}")
    from twinshot.evaluation import metrics

    return metrics.threshold_at_far(s, y, float(far))  # type: ignore[arg-type]


def bootstrap_rates(
    scores: np.ndarray,
    same: np.ndarray,
    threshold: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% percentile bootstrap intervals ``((far_lo, far_hi), (frr_lo, frr_hi))`` of the
    false accept and false reject rates at a fixed ``threshold``, resampling impostor and
    genuine pairs separately (stratified), ``n_boot`` times, seeded."""
    s, y = _check_pairs(scores, same)
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    import torch

    g = torch.Generator().manual_seed(int(seed))
    out = []
    for group, err in ((~y, lambda a: a), (y, lambda a: ~a)):
        errors = err(s[group] >= threshold)
        n = int(group.sum())
        rate = float(errors.mean())
        draws = torch.binomial(torch.full((n_boot,), float(n), dtype=torch.float64), torch.full((n_boot,), rate, dtype=torch.float64), generator=g)
        r = draws.numpy() / n
        out.append((float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))))
    return out[0], out[1]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _beta_ppf(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection on :func:`_betainc` (to 1e-12)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def exact_interval(errors: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Clopper-Pearson (exact binomial) interval of a rate observed as ``errors`` out of
    ``n``: never narrower than the truth, and not ``[0, 0]`` when no error was seen.

    >>> lo, hi = exact_interval(0, 2000); lo, round(hi, 5)
    (0.0, 0.00184)
    """
    if n < 1 or not 0 <= errors <= n:
        raise ConfigError(f"exact_interval needs 0 <= errors <= n and n >= 1, got {errors} of {n}")
    alpha = 1.0 - level
    lo = 0.0 if errors == 0 else _beta_ppf(alpha / 2, errors, n - errors + 1)
    hi = 1.0 if errors == n else _beta_ppf(1 - alpha / 2, errors + 1, n - errors)
    return lo, hi


def exact_rates(scores: np.ndarray, same: np.ndarray, threshold: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Clopper-Pearson 95% intervals ``((far_lo, far_hi), (frr_lo, frr_hi))`` at ``threshold``."""
    s, y = _check_pairs(scores, same)
    accepted = s >= threshold
    far = exact_interval(int((accepted & ~y).sum()), int((~y).sum()))
    frr = exact_interval(int((~accepted & y).sum()), int(y.sum()))
    return far, frr


@dataclass(frozen=True)
class CalibrationReport:
    """The threshold and probability calibration fitted on labelled pairs.

    Attributes:
        threshold: accept "same" when the score (logit) is at least this.
        target: ``"far=<rate>"`` or ``"eer"``.
        far, frr: false accept and false reject rates at ``threshold`` on the pairs.
        far_ci95, frr_ci95: their bootstrap 95% intervals.
        far_exact95, frr_exact95: their Clopper-Pearson 95% intervals (see
            :func:`exact_interval`; the honest one when few or no errors were observed).
        eer: the equal error rate of the pairs.
        calibration: the score-to-probability map.
        probability_at_threshold: the calibrated probability at ``threshold``.
        ece_before, ece_after: expected calibration error of ``sigmoid(score)`` and of the
            calibrated probabilities on the same pairs.
        n_genuine, n_impostor: the pairs used.
        source: where they came from.
    """

    threshold: float
    target: str
    far: float
    frr: float
    far_ci95: tuple[float, float]
    frr_ci95: tuple[float, float]
    eer: float
    calibration: Calibration
    probability_at_threshold: float
    ece_before: float
    ece_after: float
    n_genuine: int
    n_impostor: int
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    far_exact95: tuple[float, float] = (math.nan, math.nan)
    frr_exact95: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "target": self.target,
            "far": self.far,
            "frr": self.frr,
            "far_ci95": list(self.far_ci95),
            "frr_ci95": list(self.frr_ci95),
            "far_exact95": list(self.far_exact95),
            "frr_exact95": list(self.frr_exact95),
            "eer": self.eer,
            "calibration": self.calibration.to_dict(),
            "probability_at_threshold": self.probability_at_threshold,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "source": self.source,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationReport:
        return cls(
            threshold=float(d["threshold"]),
            target=str(d["target"]),
            far=float(d["far"]),
            frr=float(d["frr"]),
            far_ci95=tuple(d["far_ci95"]),  # type: ignore[arg-type]
            frr_ci95=tuple(d["frr_ci95"]),  # type: ignore[arg-type]
            eer=float(d["eer"]),
            calibration=Calibration.from_dict(d["calibration"]),
            probability_at_threshold=float(d["probability_at_threshold"]),
            ece_before=float(d["ece_before"]),
            ece_after=float(d["ece_after"]),
            n_genuine=int(d["n_genuine"]),
            n_impostor=int(d["n_impostor"]),
            source=str(d.get("source", "")),
            extra=dict(d.get("extra", {})),
            far_exact95=tuple(d.get("far_exact95", (math.nan, math.nan))),  # type: ignore[arg-type]
            frr_exact95=tuple(d.get("frr_exact95", (math.nan, math.nan))),  # type: ignore[arg-type]
        )


def calibrate_scores(
    scores: np.ndarray,
    same: np.ndarray,
    *,
    far: float | None = None,
    eer: bool = False,
    method: str = "platt",
    n_boot: int = 1000,
    seed: int = 0,
    source: str = "",
) -> CalibrationReport:
    """Fit the threshold (``far`` or ``eer``) and the probability calibration ``method`` on
    labelled pair scores, and report FAR/FRR at the threshold with bootstrap intervals."""
    s, y = _check_pairs(scores, same)
    threshold = fit_threshold(s, y, far=far, eer=eer)
    calibration = fit_calibration(s, y, method)
    from twinshot.evaluation import metrics

    far_at, frr_at = metrics.rates_at_threshold(s, y, threshold)
    far_ci, frr_ci = bootstrap_rates(s, y, threshold, n_boot=n_boot, seed=seed)
    far_exact, frr_exact = exact_rates(s, y, threshold)
    return CalibrationReport(
        threshold=float(threshold),
        target="eer" if eer else f"far={far:g}",
        far=far_at,
        frr=frr_at,
        far_ci95=far_ci,
        frr_ci95=frr_ci,
        eer=metrics.equal_error_rate(s, y)[0],
        calibration=calibration,
        probability_at_threshold=float(calibration.probability(threshold)),
        ece_before=expected_calibration_error(_sigmoid(s), y),
        ece_after=expected_calibration_error(calibration.probability(s), y),
        n_genuine=int(y.sum()),
        n_impostor=int((~y).sum()),
        source=source,
        far_exact95=far_exact,
        frr_exact95=frr_exact,
    )


# -- where the pairs come from ---------------------------------------------------------------


def pairs_csv_scores(model: Any, path: str | os.PathLike, *, batch_size: int = 256, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of the pairs of a ``path1,path2,same`` CSV, each image embedded once,
    with a torch model or any :class:`twinshot.gallery.embedding.Embedder`."""
    from twinshot.evaluation.pairs import read_pairs_csv
    from twinshot.gallery.embedding import TorchEmbedder, as_embedder, embed_sources

    pairs = read_pairs_csv(path)
    embedder = as_embedder(model)
    if isinstance(embedder, TorchEmbedder):
        from twinshot.evaluation.verification import pair_scores

        return pair_scores(embedder.model, pairs, batch_size=batch_size, progress=progress)
    if len(pairs) == 0:
        raise DataError("no pairs to score")
    index: dict[str, int] = {}
    for pair in pairs:
        for p in (pair.path1, pair.path2):
            index.setdefault(os.fspath(p), len(index))
    e = embed_sources(embedder, list(index), batch_size=batch_size)
    i1 = np.array([index[os.fspath(p.path1)] for p in pairs])
    i2 = np.array([index[os.fspath(p.path2)] for p in pairs])
    scores = embedder.logits(e[i1], e[i2]).astype(np.float64)
    return scores, np.array([bool(p.same) for p in pairs])


def folder_pair_scores(
    model: Any,
    folder: str | os.PathLike,
    *,
    n_pairs: int = 4000,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of ``n_pairs`` pairs drawn from a labelled folder (or zip) of class
    folders: half genuine (two images of one class), half impostor (two classes), drawn
    with :class:`twinshot.data.PairSampler` seeded by ``seed``. Every image is embedded once.
    ``model``: a torch model or any :class:`twinshot.gallery.embedding.Embedder`."""
    from twinshot.data import PairSampler, load_dataset
    from twinshot.gallery.embedding import as_embedder, embed_uint8

    if n_pairs < 2:
        raise ConfigError(f"n_pairs must be >= 2, got {n_pairs}")
    embedder = as_embedder(model)
    dataset = load_dataset(Path(folder), embedder.preprocessing, progress=progress)
    if dataset.n_classes < 2:
        raise DataError(f"{folder}: calibration needs at least 2 classes, found {dataset.n_classes}")
    most = int(np.bincount(dataset.labels.numpy()).max())
    if most < 2:
        raise DataError(
            f"{folder}: calibration needs classes with at least 2 images (for genuine pairs); "
            f"each of its {dataset.n_classes} classes has 1"
        )
    sampler = PairSampler(
        dataset.labels, batch_size=n_pairs, batches=1, seed=seed, same_fraction=0.5,
        class_names=dataset.class_names, skip_small=True,
    )
    batch = next(iter(sampler))
    e = embed_uint8(embedder, dataset.images.numpy(), batch_size=batch_size)
    idx1, idx2 = batch.idx1.numpy(), batch.idx2.numpy()
    scores = np.concatenate([
        embedder.logits(e[idx1[i : i + 4096]], e[idx2[i : i + 4096]]) for i in range(0, n_pairs, 4096)
    ])
    return scores.astype(np.float64), batch.same.numpy().astype(bool)
