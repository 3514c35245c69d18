"""Open-set identification at gallery scale: enroll N classes, query everyone.

The protocol (one *draw* per seed, :func:`draw_open_set`):

* ``enrolled`` classes of the labelled set are enrolled with ``references`` images each
  (one gallery of N identities);
* every class is queried with images that are not enrolled (up to ``queries`` per class,
  default all): queries of an enrolled class are *mated* searches, queries of the other
  classes (the *strangers*) are *non-mated* searches;
* ``groups`` says where the strangers come from: ``"any"`` (classes drawn at random,
  groups ignored), ``"same"`` (every group, e.g. Omniglot alphabet, gives both enrolled
  classes and strangers, in proportion to its size: the hard case, strangers look like
  the enrolled) or ``"disjoint"`` (enrolled classes and strangers from different groups).

Each query is compared with every reference (the model's pairwise logits, **higher is more
alike**); an identity's score is the ``rule`` (``"max"`` or ``"mean"``) of its references'
scores, as in :class:`twinshot.gallery.Gallery`. The metrics use the vocabulary of
:mod:`twinshot.gallery.openset` (ISO/IEC 19795-1): closed-set rank-1 / rank-5 accuracy of
the mated searches; DIR (detection and identification rate) at each FPIR (false positive
identification rate, the share of strangers accepted as *someone*), with the threshold set
on the draw's own strangers (an oracle threshold: use ``threshold`` to evaluate one fixed
in advance, e.g. by ``twinshot gallery calibrate --fpir``); the *open-set accuracy*
``(DIR + 1 - FPIR) / 2`` (mated searches answered right and strangers rejected, weighted
equally) at each FPIR and at its best threshold; and the DET curve (FNIR = 1 - DIR against
FPIR on a log grid). Figures are means over ``seeds`` draws with a normal 95% interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from twinshot.errors import ConfigError, DataError
from twinshot.evaluation.metrics import mean_ci95

GROUP_MODES = ("any", "same", "disjoint")
RULES = ("max", "mean")
DEFAULT_FPIRS: tuple[float, ...] = (0.01, 0.1)
#: FPIR grid of the DET curve (log-spaced, 1e-3 .. 1).
DET_FPIRS: tuple[float, ...] = tuple(float(x) for x in np.logspace(-3, 0, 31))

#: ``pairwise(a (Q, D), b (N, D)) -> (Q, N)`` logits, higher is more alike.
Pairwise = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``transform(scores (Q, N), queries (Q, D), references (N, D)) -> (Q, N)``: e.g. cohort
#: score normalisation applied to the reference-level logits before the rule.
Transform = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _key(rate: float) -> str:
    return f"{rate:g}"


def threshold_at_fpir(nonmated_scores: np.ndarray, fpir: float) -> float:
    """The gallery's rule (:func:`twinshot.gallery.openset.threshold_at_fpir`): the lowest
    threshold accepting at most ``fpir`` of the non-mated best scores."""
    from twinshot.gallery.openset import threshold_at_fpir as _threshold

    return _threshold(nonmated_scores, fpir)


@dataclass(frozen=True)
class OpenSetDraw:
    """One gallery and its queries, as indices into the labelled set.

    Attributes:
        enrolled: int64 ``(N,)`` the enrolled classes (identity ``i`` is class ``enrolled[i]``).
        ref_index: int64 ``(N * R,)`` image indices of the references.
        ref_identity: int64 ``(N * R,)`` their identity in ``[0, N)``.
        query_index: int64 ``(Q,)`` image indices of the queries.
        query_identity: int64 ``(Q,)`` the identity of each query, ``-1`` for a stranger.
    """

    enrolled: np.ndarray
    ref_index: np.ndarray
    ref_identity: np.ndarray
    query_index: np.ndarray
    query_identity: np.ndarray


def parse_rates(text: str, name: str = "--fpir") -> tuple[float, ...]:
    """``"0.01,0.1"`` -> ``(0.01, 0.1)``; a ConfigError naming ``name`` otherwise."""
    try:
        rates = tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected comma-separated rates such as 0.01,0.1, got {text!r}") from None
    try:
        return _check_rates(rates)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _check_rates(fpirs: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(f) for f in fpirs)
    if not out or any(not 0.0 < f < 1.0 for f in out):
        raise ConfigError(f"each FPIR must be in (0, 1), got {list(fpirs)}")
    return out


def _choose_enrolled(
    counts: np.ndarray, class_groups: np.ndarray, enrolled: int, references: int, groups: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(enrolled classes, stranger classes)`` for one draw."""
    n_classes = counts.size
    eligible = counts >= references + 1  # an enrolled class needs one image to query it with
    if groups == "any":
        perm = rng.permutation(n_classes)
        chosen = [c for c in perm if eligible[c]][:enrolled]
        if len(chosen) < enrolled:
            raise DataError(
                f"only {int(eligible.sum())} classes have {references + 1}+ images ({references} reference(s) "
                f"and a query); cannot enroll {enrolled}"
            )
        chosen_set = set(chosen)
        strangers = [c for c in range(n_classes) if c not in chosen_set]
    elif groups == "same":
        ids = np.unique(class_groups)
        members = [rng.permutation(np.nonzero(class_groups == g)[0]) for g in ids]
        members = [np.array([c for c in m if eligible[c]] + [c for c in m if not eligible[c]], dtype=np.int64) for m in members]
        room = np.array([max(0, min(int(eligible[m].sum()), m.size - 1)) for m in members])
        if enrolled > room.sum():
            raise DataError(
                f"cannot enroll {enrolled} classes and keep a stranger in each of the {ids.size} groups "
                f"(at most {int(room.sum())})"
            )
        sizes = np.array([m.size for m in members], dtype=np.float64)
        ideal = enrolled * sizes / sizes.sum()
        quota = np.minimum(np.floor(ideal).astype(np.int64), room)
        for g in np.argsort(-(ideal - quota), kind="stable").tolist() * 2:  # largest remainders first
            if quota.sum() >= enrolled:
                break
            if quota[g] < room[g]:
                quota[g] += 1
        while quota.sum() < enrolled:  # caps left some over: fill wherever there is room
            g = int(np.argmax(room - quota))
            quota[g] += 1
        chosen = [int(c) for m, q in zip(members, quota) for c in m[:q]]
        strangers = [int(c) for m, q in zip(members, quota) for c in m[q:]]
    elif groups == "disjoint":
        ids = rng.permutation(np.unique(class_groups))
        pool: list[int] = []
        used = 0
        for g in ids:
            if sum(eligible[c] for c in pool) >= enrolled:
                break
            pool.extend(np.nonzero(class_groups == g)[0].tolist())
            used += 1
        candidates = [c for c in rng.permutation(np.array(pool, dtype=np.int64)).tolist() if eligible[c]]
        if len(candidates) < enrolled or used >= ids.size:
            raise DataError(
                f"cannot enroll {enrolled} classes from whole groups and leave another group for the strangers "
                f"({ids.size} groups, {n_classes} classes)"
            )
        chosen = candidates[:enrolled]
        pool_set = set(int(g) for g in ids[:used])
        strangers = [c for c in range(n_classes) if int(class_groups[c]) not in pool_set]
    else:
        raise ConfigError(f"unknown group mode {groups!r}; valid: {', '.join(GROUP_MODES)}")
    return np.asarray(chosen, dtype=np.int64), np.asarray(strangers, dtype=np.int64)


def draw_open_set(
    labels: np.ndarray,
    class_groups: np.ndarray,
    *,
    enrolled: int,
    references: int = 1,
    queries: int | None = None,
    groups: str = "any",
    rng: np.random.Generator,
) -> OpenSetDraw:
    """Draw one open-set gallery and its queries (see the module docstring).

    Args:
        labels: int ``(n_images,)`` class of each image, in ``[0, n_classes)``.
        class_groups: int ``(n_classes,)`` group of each class (one group for a set without).
        enrolled: classes to enroll (at least 1; at least one class must be left as a stranger).
        references: images enrolled per class.
        queries: at most this many query images per class (``None``: every image not enrolled).
        groups: ``"any"``, ``"same"`` or ``"disjoint"``.
        rng: the draw's random generator.
    """
    labels = np.asarray(labels, dtype=np.int64)
    class_groups = np.asarray(class_groups, dtype=np.int64)
    n_classes = class_groups.size
    if enrolled < 1 or references < 1 or (queries is not None and queries < 1):
        raise ConfigError(f"enrolled, references and queries must be >= 1, got {enrolled}, {references}, {queries}")
    if enrolled >= n_classes:
        raise DataError(f"cannot enroll {enrolled} of {n_classes} classes and keep strangers; enroll fewer")
    counts = np.bincount(labels, minlength=n_classes)
    chosen, strangers = _choose_enrolled(counts, class_groups, enrolled, references, groups, rng)
    by_class = [np.nonzero(labels == c)[0] for c in range(n_classes)]
    refs, ref_id, qs, q_id = [], [], [], []
    for i, c in enumerate(chosen.tolist()):
        images = rng.permutation(by_class[c])
        refs.append(images[:references])
        ref_id.append(np.full(references, i))
        rest = images[references:] if queries is None else images[references : references + queries]
        qs.append(rest)
        q_id.append(np.full(rest.size, i))
    for c in strangers.tolist():
        images = rng.permutation(by_class[c])
        rest = images if queries is None else images[:queries]
        qs.append(rest)
        q_id.append(np.full(rest.size, -1))
    query_identity = np.concatenate(q_id).astype(np.int64)
    if not (query_identity < 0).any():
        raise DataError("the strangers have no images to query with")
    return OpenSetDraw(
        enrolled=chosen,
        ref_index=np.concatenate(refs).astype(np.int64),
        ref_identity=np.concatenate(ref_id).astype(np.int64),
        query_index=np.concatenate(qs).astype(np.int64),
        query_identity=query_identity,
    )


def identity_scores(logits: np.ndarray, ref_identity: np.ndarray, n_identities: int, rule: str = "max") -> np.ndarray:
    """Reference-level scores ``(Q, N*R)`` -> identity scores ``(Q, N)`` by ``rule``."""
    if rule not in RULES:
        raise ConfigError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
    logits = np.asarray(logits, dtype=np.float64)
    order = np.argsort(ref_identity, kind="stable")
    counts = np.bincount(ref_identity, minlength=n_identities)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    grouped = logits[:, order]
    if rule == "max":
        return np.maximum.reduceat(grouped, starts, axis=1)
    return np.add.reduceat(grouped, starts, axis=1) / counts


@dataclass(frozen=True)
class DrawScores:
    """Each query's outcome in one draw.

    Attributes:
        best: float64 ``(Q,)`` the best identity score.
        predicted: int64 ``(Q,)`` the best identity.
        true_rank: int64 ``(Q,)`` 0-based rank of the true identity (``-1`` for strangers).
    """

    best: np.ndarray
    predicted: np.ndarray
    true_rank: np.ndarray

    @property
    def mated(self) -> np.ndarray:
        return self.true_rank >= 0


def score_draw(
    embeddings: np.ndarray,
    draw: OpenSetDraw,
    pairwise: Pairwise,
    *,
    rule: str = "max",
    transform: Transform | None = None,
    block: int = 4096,
) -> DrawScores:
    """Score the queries of ``draw`` against its references (``embeddings (n_images, D)``)."""
    refs = embeddings[draw.ref_index]
    n = draw.enrolled.size
    best, pred, rank = [], [], []
    for a in range(0, draw.query_index.size, block):
        q = embeddings[draw.query_index[a : a + block]]
        logits = np.asarray(pairwise(q, refs), dtype=np.float64)
        if transform is not None:
            logits = np.asarray(transform(logits, q, refs), dtype=np.float64)
        per = identity_scores(logits, draw.ref_identity, n, rule)
        who = draw.query_identity[a : a + block]
        p = np.argmax(per, axis=1)
        true = np.where(who >= 0, per[np.arange(len(who)), np.maximum(who, 0)], np.nan)
        # rank = identities strictly better, plus those tied that come first (argmax's tie rule)
        better = (per > true[:, None]).sum(1) + ((per == true[:, None]) & (np.arange(n)[None] < who[:, None])).sum(1)
        best.append(per[np.arange(len(who)), p])
        pred.append(p)
        rank.append(np.where(who >= 0, better, -1))
    return DrawScores(best=np.concatenate(best), predicted=np.concatenate(pred).astype(np.int64), true_rank=np.concatenate(rank).astype(np.int64))


def draw_metrics(scores: DrawScores, fpirs: Sequence[float], threshold: float | None = None) -> dict[str, Any]:
    """One draw's figures: rank-1/5, DIR, threshold and FPIR reached at each target FPIR,
    open-set accuracy there and at its best threshold, the DET curve, and (with
    ``threshold``) DIR / FPIR / misidentification at that fixed threshold."""
    mated = scores.mated
    hit = mated & (scores.true_rank == 0)
    n_m, n_n = int(mated.sum()), int((~mated).sum())
    if n_m == 0 or n_n == 0:
        raise DataError(f"open-set metrics need mated and stranger queries; got {n_m} and {n_n}")
    non = scores.best[~mated]
    hit_scores = np.sort(scores.best[hit])
    non_sorted = np.sort(non)

    def rates(t: float) -> tuple[float, float]:
        d = (hit_scores.size - np.searchsorted(hit_scores, t, side="left")) / n_m
        f = (non_sorted.size - np.searchsorted(non_sorted, t, side="left")) / n_n
        return float(d), float(f)

    out: dict[str, Any] = {
        "n_mated": n_m, "n_nonmated": n_n,
        "rank1": float(hit.sum() / n_m),
        "rank5": float((mated & (scores.true_rank < 5)).sum() / n_m),
        "dir_at_fpir": {}, "threshold_at_fpir": {}, "fpir_achieved": {}, "accuracy_at_fpir": {},
    }
    for f in fpirs:
        t = threshold_at_fpir(non, f)
        d, fp = rates(t)
        out["dir_at_fpir"][_key(f)] = d
        out["threshold_at_fpir"][_key(f)] = t
        out["fpir_achieved"][_key(f)] = fp
        out["accuracy_at_fpir"][_key(f)] = (d + 1.0 - fp) / 2.0
    candidates = np.concatenate([np.unique(scores.best), [np.inf]])
    d_all = (hit_scores.size - np.searchsorted(hit_scores, candidates, side="left")) / n_m
    f_all = (non_sorted.size - np.searchsorted(non_sorted, candidates, side="left")) / n_n
    acc = (d_all + 1.0 - f_all) / 2.0
    i = int(np.argmax(acc))
    out["best_accuracy"] = float(acc[i])
    out["best_accuracy_threshold"] = float(candidates[i])
    out["det_fnir"] = [1.0 - rates(threshold_at_fpir(non, f))[0] for f in DET_FPIRS]
    if threshold is not None:
        d, fp = rates(float(threshold))
        accepted = scores.best >= threshold
        out["threshold"] = float(threshold)
        out["dir_at_threshold"] = d
        out["fpir_at_threshold"] = fp
        out["accuracy_at_threshold"] = (d + 1.0 - fp) / 2.0
        out["misidentified_at_threshold"] = float((mated & (scores.true_rank != 0) & accepted).sum() / n_m)
    return out


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    mean, half = mean_ci95(np.asarray(values, dtype=np.float64))
    return {"mean": mean, "ci95": half if math.isfinite(half) else None}


@dataclass(frozen=True)
class OpenSetResult:
    """The open-set protocol's figures, each a mean over the seeds with a 95% interval.

    Attributes:
        n_classes, enrolled, references, queries, groups, rule, seeds, seed, fpirs: the protocol.
        per_seed: each draw's :func:`draw_metrics`.
        threshold: the fixed threshold evaluated as well, if any.
    """

    n_classes: int
    enrolled: int
    references: int
    queries: int | None
    groups: str
    rule: str
    seeds: int
    seed: int
    fpirs: tuple[float, ...]
    per_seed: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, name: str) -> dict[str, float | None]:
        """Mean and 95% half-width of a scalar figure, e.g. ``"rank1"``."""
        return _summary([s[name] for s in self.per_seed])

    def at_fpir(self, name: str) -> dict[str, dict[str, float | None]]:
        """Mean and 95% half-width of a per-FPIR figure, e.g. ``"dir_at_fpir"``."""
        return {_key(f): _summary([s[name][_key(f)] for s in self.per_seed]) for f in self.fpirs}

    @property
    def det(self) -> dict[str, list[float]]:
        """The DET curve averaged over seeds: FNIR at each FPIR of :data:`DET_FPIRS`."""
        fnir = np.mean([s["det_fnir"] for s in self.per_seed], axis=0)
        return {"fpir": list(DET_FPIRS), "fnir": [float(x) for x in fnir]}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": "open-set",
            "n_classes": self.n_classes, "enrolled": self.enrolled, "references": self.references,
            "queries": self.queries, "groups": self.groups, "rule": self.rule,
            "seeds": self.seeds, "seed": self.seed, "fpirs": list(self.fpirs),
            "n_mated": self.summary("n_mated")["mean"], "n_nonmated": self.summary("n_nonmated")["mean"],
            "rank1": self.summary("rank1"), "rank5": self.summary("rank5"),
            "dir_at_fpir": self.at_fpir("dir_at_fpir"),
            "threshold_at_fpir": self.at_fpir("threshold_at_fpir"),
            "fpir_achieved": self.at_fpir("fpir_achieved"),
            "accuracy_at_fpir": self.at_fpir("accuracy_at_fpir"),
            "best_accuracy": self.summary("best_accuracy"),
            "det": self.det,
        }
        if self.threshold is not None:
            out["threshold"] = self.threshold
            for name in ("dir_at_threshold", "fpir_at_threshold", "accuracy_at_threshold", "misidentified_at_threshold"):
                out[name] = self.summary(name)
        out.update(self.extra)
        return out


def evaluate_open_set_embeddings(
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_groups: np.ndarray,
    pairwise: Pairwise,
    *,
    enrolled: int,
    references: int = 1,
    queries: int | None = None,
    fpirs: Sequence[float] = DEFAULT_FPIRS,
    seeds: int = 5,
    seed: int = 0,
    groups: str = "any",
    rule: str = "max",
    threshold: float | None = None,
    transform: Transform | None = None,
) -> OpenSetResult:
    """The open-set protocol on precomputed embeddings ``(n_images, D)``.

    Draw ``d`` (``0 <= d < seeds``) uses ``numpy.random.default_rng(seed + d)``, so a seed
    gives the same galleries whatever the model. See :func:`draw_open_set` for the rest.
    """
    fpirs = _check_rates(fpirs)
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    if rule not in RULES:
        raise ConfigError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
    if groups not in GROUP_MODES:
        raise ConfigError(f"unknown group mode {groups!r}; valid: {', '.join(GROUP_MODES)}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    per_seed = []
    for d in range(seeds):
        rng = np.random.default_rng(seed + d)
        draw = draw_open_set(labels, class_groups, enrolled=enrolled, references=references, queries=queries, groups=groups, rng=rng)
        scores = score_draw(embeddings, draw, pairwise, rule=rule, transform=transform)
        per_seed.append(draw_metrics(scores, fpirs, threshold))
    return OpenSetResult(
        n_classes=int(np.asarray(class_groups).size), enrolled=int(enrolled), references=int(references),
        queries=queries, groups=groups, rule=rule, seeds=int(seeds), seed=int(seed), fpirs=fpirs,
        per_seed=tuple(per_seed), threshold=None if threshold is None else float(threshold),
    )


def evaluate_open_set(
    model: Any,
    dataset: Any,
    *,
    enrolled: int,
    references: int = 1,
    queries: int | None = None,
    fpirs: Sequence[float] = DEFAULT_FPIRS,
    seeds: int = 5,
    seed: int = 0,
    groups: str = "any",
    rule: str = "max",
    threshold: float | None = None,
    tta: str = "none",
    norm: str = "none",
    cohort: Any = None,
    cohort_size: int = 1000,
    top_k: int = 100,
    batch_size: int = 256,
    progress: bool = False,
) -> OpenSetResult:
    """The open-set protocol for a model (torch or any gallery ``Embedder``) on a
    :class:`twinshot.data.LabelledImages` at its preprocessing; every image is embedded once
    (``tta``: test-time augmentation, see :func:`twinshot.evaluation.tta.embed_tta`).

    ``norm`` (:data:`twinshot.gallery.cohort.NORMS`) normalises the scores with a cohort of
    at most ``cohort_size`` images of ``cohort`` (LabelledImages of classes that are neither
    enrolled nor queried, embedded the same way); ``top_k`` is AS-norm's."""
    from twinshot.evaluation.tta import embed_tta
    from twinshot.gallery.cohort import NORMS, CohortNorm, sample_cohort
    from twinshot.gallery.embedding import as_embedder

    if len(dataset) == 0:
        raise DataError("the dataset has no images")
    if norm not in NORMS:
        raise ConfigError(f"unknown score normalisation {norm!r}; valid: {', '.join(NORMS)}")
    if norm != "none" and (cohort is None or len(cohort) < 2):
        raise ConfigError(f"score normalisation {norm!r} needs a cohort (--cohort DIR) of at least 2 images")
    embedder = as_embedder(model)
    embeddings = embed_tta(embedder, dataset.images.numpy(), tta=tta, batch_size=batch_size, progress=progress)
    transform = None
    if norm != "none":
        pool = embed_tta(embedder, cohort.images.numpy(), tta=tta, batch_size=batch_size)
        transform = CohortNorm(norm, sample_cohort(pool, cohort_size, seed), top_k=top_k).transform(embedder.pairwise_logits)
    result = evaluate_open_set_embeddings(
        embeddings, dataset.labels.numpy(), dataset.class_groups.numpy(), embedder.pairwise_logits,
        enrolled=enrolled, references=references, queries=queries, fpirs=fpirs, seeds=seeds, seed=seed,
        groups=groups, rule=rule, threshold=threshold, transform=transform,
    )
    extra: dict[str, Any] = {"tta": tta, "norm": norm, "n_images": len(dataset)}
    if norm != "none":
        extra.update(cohort_images=min(len(cohort), cohort_size), top_k=top_k if norm == "asnorm" else None)
    return OpenSetResult(**{**result.__dict__, "extra": extra})
