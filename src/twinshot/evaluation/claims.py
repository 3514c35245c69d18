"""Writer-dependent signature verification on CEDAR, as a bank works: enroll ``R`` genuine
references per writer in a gallery, then verify questioned signatures against the
**claimed** writer with :func:`twinshot.gallery.claims.claim_scores` (all of that writer's
references, the gallery's rule), the code path of ``twinshot gallery verify``.

Protocol, per writer of ``writers`` (e.g. held-out ones), with a seeded shuffle of its 24
genuine signatures: the first ``pool`` (12) are the reference pool, of which the first
``R`` are enrolled; the other genuine signatures are the questioned genuine claims (the
same for every ``R``). Impostor claims, reported separately:

* **skilled**: every skilled forgery of the writer, claiming to be that writer;
* **random**: every questioned genuine signature of the *other* writers, claiming to be it.

One global threshold over all writers (a gallery has one): EER, and FRR at FAR 1% (the
lowest threshold whose FAR on that impostor kind is at most 1%).

``scoring="svm"`` replaces the gallery's distance rule by a writer-dependent classifier per
writer (:mod:`twinshot.writer_dependent`): an RBF SVM on the model's ``layer`` features,
the writer's ``R`` references vs a **cohort** of genuine signatures of writers that are
neither enrolled nor questioned (by default every other writer of the folder, e.g. the
ones the model was trained on), with ``augment`` mildly distorted copies of each reference
as extra positives. The questioned signatures and thresholds are the same.

``scoring="fused"`` adds to each SVM score a pair model's scores of the questioned
signature against the ``R`` references, combined and weighted as the model's stored
:class:`twinshot.writer_dependent.fusion.ClaimFusion` says (``extra["claims_fusion"]``;
docs/applications.md, run 23).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from twinshot.errors import ConfigError, DataError
from twinshot.evaluation import metrics
from twinshot.evaluation.verification import embed_sources, far_key

#: Impostor kinds of the protocol.
KINDS: tuple[str, ...] = ("skilled", "random")
#: How a claim is scored: the gallery's rule on embeddings, or a writer-dependent SVM.
SCORINGS: tuple[str, ...] = ("gallery", "svm", "fused")


@dataclass(frozen=True)
class ClaimRates:
    """Rates of claims with one impostor kind: ``eer`` (and its threshold) and
    ``frr_at_far`` (``{"1e-2": frr}``), over ``n_genuine`` and ``n_impostor`` claims."""

    eer: float
    eer_threshold: float
    frr_at_far: dict[str, float]
    n_genuine: int
    n_impostor: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "eer": self.eer, "eer_threshold": self.eer_threshold, "frr_at_far": dict(self.frr_at_far),
            "n_genuine": self.n_genuine, "n_impostor": self.n_impostor,
        }


@dataclass(frozen=True)
class WriterDependentResult:
    """The rates with ``references`` enrolled genuine signatures per writer."""

    references: int
    rule: str
    writers: list[int]
    rates: dict[str, ClaimRates] = field(default_factory=dict)
    scoring: str = "gallery"
    layer: str | None = None
    cohort: list[int] = field(default_factory=list)
    augment: int = 0
    fusion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "cedar_writer_dependent", "references": self.references, "rule": self.rule,
            "scoring": self.scoring, "layer": self.layer, "cohort": list(self.cohort), "augment": self.augment,
            "fusion": self.fusion, "writers": list(self.writers), **{k: v.to_dict() for k, v in self.rates.items()},
        }


@dataclass(frozen=True)
class _Claims:
    """The protocol's claims: the evaluated writers' ``images``, each writer's genuine and
    forged image indices (``by_writer``), its reference pool (``refs``) and questioned
    genuine signatures (``questioned``)."""

    images: list[Any]
    by_writer: dict[int, dict[str, list[int]]]
    refs: dict[int, list[int]]
    questioned: dict[int, list[int]]

    def of(self, w: int) -> list[tuple[str, list[int]]]:
        """Writer ``w``'s claims: (kind, questioned image indices), the kinds that have any."""
        others = [i for o in sorted(self.refs) if o != w for i in self.questioned[o]]
        kinds = (("genuine", self.questioned[w]), ("skilled", self.by_writer[w]["forged"]), ("random", others))
        return [(kind, idx) for kind, idx in kinds if idx]


@dataclass(frozen=True)
class _SVMRun:
    """How ``scoring="svm"`` (or ``"fused"``) runs: see :func:`cedar_writer_dependent`'s arguments."""

    layer: str
    cohort: Iterable[int] | str | None
    svm: Any
    fars: Sequence[float]
    batch_size: int
    augment: int
    seed: int
    fusion: Any = None


def _kind_rates(scores: dict[str, list[np.ndarray]], fars: Sequence[float]) -> dict[str, ClaimRates]:
    """Rates of each impostor kind from claim scores by kind (``"genuine"`` and :data:`KINDS`)."""
    genuine = np.concatenate(scores["genuine"])
    return {k: _rates(genuine, np.concatenate(scores[k]), fars) for k in KINDS if scores[k]}


def _rates(genuine: np.ndarray, impostor: np.ndarray, fars: Sequence[float]) -> ClaimRates:
    scores = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    eer, threshold = metrics.equal_error_rate(scores, same)
    return ClaimRates(
        eer=eer, eer_threshold=threshold,
        frr_at_far={far_key(f): 1.0 - metrics.tar_at_far(scores, same, f) for f in fars},
        n_genuine=len(genuine), n_impostor=len(impostor),
    )


def cedar_writer_dependent(
    model: Any,
    root: str | os.PathLike,
    writers: Iterable[int] | str | None = None,
    *,
    references: Sequence[int] = (1, 5, 12),
    pool: int = 12,
    rule: str = "max",
    seed: int = 0,
    fars: Sequence[float] = (1e-2,),
    batch_size: int = 64,
    progress: bool = False,
    scoring: str = "gallery",
    layer: str = "grid",
    cohort: Iterable[int] | str | None = None,
    svm: Any = None,
    augment: int = 10,
) -> list[WriterDependentResult]:
    """Claimed-identity verification rates for each number of references (see the module).

    Args:
        model: a :class:`twinshot.models.SiameseNetwork`.
        root: the CEDAR folder.
        writers: the writers to enroll and question, e.g. ``"36-45"`` (all when None).
        references: the values of ``R`` (each at most ``pool``).
        pool: genuine signatures per writer set aside as possible references.
        rule: how a writer's references combine (``"max"`` or ``"mean"``).
        seed: seeds the shuffle of each writer's genuine signatures.
        scoring: ``"gallery"`` (the gallery's ``rule``), ``"svm"`` (writer-dependent SVMs) or
            ``"fused"`` (the SVMs plus the pair model of the model's stored claims fusion).
        layer: the features of the SVMs (see :data:`twinshot.writer_dependent.FEATURE_LAYERS`).
        cohort: the SVMs' negative writers (default: every writer of ``root`` not in ``writers``);
            ``"enrolled"``: each writer's SVM against the other enrolled writers' ``R``
            references, the default of ``twinshot gallery verify --scoring svm``.
        svm: a :class:`twinshot.writer_dependent.SVMConfig` (default: C 1, gamma "scale").
        augment: distorted copies of each reference added to the SVM's positives (seeded).

    Returns:
        One :class:`WriterDependentResult` per ``R``, in the order given.
    """
    from twinshot.data.datasets.cedar import cedar_images
    from twinshot.gallery import Gallery
    from twinshot.gallery.claims import claim_scores

    if augment < 0:
        raise ConfigError(f"augment must be >= 0, got {augment}")
    if scoring not in SCORINGS:
        raise ConfigError(f"unknown scoring {scoring!r}; valid: {', '.join(SCORINGS)}")
    if any(r < 1 or r > pool for r in references):
        raise ConfigError(f"references must be in 1..{pool} (the reference pool), got {list(references)}")
    images = cedar_images(root, writers)
    by_writer: dict[int, dict[str, list[int]]] = {}
    for i, im in enumerate(images):
        by_writer.setdefault(im.writer, {"genuine": [], "forged": []})["genuine" if im.genuine else "forged"].append(i)
    g = torch.Generator().manual_seed(int(seed))
    refs: dict[int, list[int]] = {}
    questioned: dict[int, list[int]] = {}
    for w, parts in sorted(by_writer.items()):
        gen = parts["genuine"]
        if len(gen) <= pool:
            raise DataError(f"writer {w} has {len(gen)} genuine signatures; the protocol needs more than pool={pool}")
        order = torch.randperm(len(gen), generator=g).tolist()
        refs[w] = [gen[k] for k in order[:pool]]
        questioned[w] = [gen[k] for k in order[pool:]]
    if len(by_writer) < 2:
        raise DataError("writer-dependent verification needs at least two writers (random forgeries)")
    claims = _Claims(images, by_writer, refs, questioned)
    if scoring in ("svm", "fused"):
        from twinshot.writer_dependent.fusion import model_fusion

        fusion = model_fusion(getattr(model, "source", None)) if scoring == "fused" else None
        return _svm_results(model, root, claims, references, _SVMRun(layer, cohort, svm, fars, batch_size, augment, seed, fusion))
    emb = embed_sources(model, [im.path for im in images], batch_size=batch_size, progress=progress).cpu().numpy()
    results = []
    with tempfile.TemporaryDirectory(prefix="twinshot-claims-") as tmp:
        for r in references:
            scores: dict[str, list[np.ndarray]] = {"genuine": [], "skilled": [], "random": []}
            with Gallery.create(Path(tmp) / f"r{r}.db", model, rule=rule) as gallery:
                gallery.enroll_many([(str(w), emb[refs[w][:r]], None, None) for w in sorted(refs)])
                for w in sorted(refs):
                    for kind, idx in claims.of(w):
                        scores[kind].append(claim_scores(gallery, str(w), emb[idx], rule)[0])
            rates = _kind_rates(scores, fars)
            results.append(WriterDependentResult(references=int(r), rule=rule, writers=sorted(refs), rates=rates))
    return results


def _svm_results(
    model: Any, root: str | os.PathLike, claims: _Claims, references: Sequence[int], run: _SVMRun
) -> list[WriterDependentResult]:
    """The protocol's claims scored by writer-dependent SVMs (see the module); with
    ``run.fusion``, plus the weighted pair scores against the same ``R`` references.
    ``run.cohort == "enrolled"``: each writer's SVM against the other enrolled writers' ``R``
    references (what a gallery holds; no outside writers)."""
    from twinshot.data.datasets.cedar import cedar_images, parse_writers
    from twinshot.writer_dependent import Standardiser, WriterClassifier, image_features

    images, refs, order = claims.images, claims.refs, sorted(claims.refs)
    paths = [im.path for im in images]
    if run.cohort == "enrolled":
        x = image_features(model, paths, run.layer, batch_size=run.batch_size)
        cohort_writers = order

        def negatives(w: int, r: int) -> tuple[np.ndarray, Any]:
            neg = x[[i for o in order if o != w for i in refs[o][:r]]]
            if len(neg) < 2:
                raise DataError("the enrolled cohort needs at least two references of other writers")
            return neg, Standardiser.fit(neg)
    else:
        enrolled = set(refs)
        if run.cohort is None:
            cohort_images = [im for im in cedar_images(root) if im.genuine and im.writer not in enrolled]
        else:
            wanted = parse_writers(run.cohort) or []
            clash = sorted(enrolled & set(wanted))
            if clash:
                raise ConfigError(f"cohort writers must not be enrolled: {', '.join(map(str, clash))}")
            cohort_images = [im for im in cedar_images(root, wanted) if im.genuine]
        if len(cohort_images) < 2:
            raise DataError(f"{root}: the SVM cohort needs genuine signatures of writers that are not enrolled; found none")
        feats = image_features(model, paths + [im.path for im in cohort_images], run.layer, batch_size=run.batch_size)
        x, neg = feats[: len(images)], feats[len(images):]
        standardiser = Standardiser.fit(neg)
        cohort_writers = sorted({im.writer for im in cohort_images})

        def negatives(w: int, r: int) -> tuple[np.ndarray, Any]:
            return neg, standardiser
    copies = _reference_copies(model, images, refs, run.layer, run.batch_size, run.augment, run.seed)
    fused = run.fusion is not None
    pairs = _pair_scores(claims, run) if fused else {}
    results = []
    for r in references:
        scores: dict[str, list[np.ndarray]] = {"genuine": [], "skilled": [], "random": []}
        for w in order:
            negs, std = negatives(w, r)
            extra = copies[w][:, :r].reshape(-1, x.shape[1]) if run.augment else None
            clf = WriterClassifier(run.svm, std).fit(x[refs[w][:r]], negs, extra)
            for kind, idx in claims.of(w):
                s = clf.decision_function(x[idx])
                scores[kind].append(run.fusion.fuse(s, pairs[(w, kind)][:, :r]) if fused else s)
        results.append(WriterDependentResult(
            references=int(r), rule="fused" if fused else "svm", writers=order, rates=_kind_rates(scores, run.fars),
            scoring="fused" if fused else "svm", layer=run.layer, cohort=cohort_writers, augment=int(run.augment),
            fusion=run.fusion.to_dict() if fused else None,
        ))
    return results


def _pair_scores(claims: _Claims, run: _SVMRun) -> dict[tuple[int, str], np.ndarray]:
    """(writer, kind) -> float ``(Q, pool)``: the fusion's pair model's scores of that
    writer's questioned images of that kind against its reference pool, in pool order."""
    from twinshot.writer_dependent.fusion import embed_images, load_pairs_model, pair_scores

    pairs_model = load_pairs_model(run.fusion)
    emb = embed_images(pairs_model, [im.path for im in claims.images], batch_size=run.batch_size)
    return {
        (w, kind): pair_scores(pairs_model, emb[idx], emb[claims.refs[w]])
        for w in sorted(claims.refs) for kind, idx in claims.of(w)
    }


def _reference_copies(
    model: Any, images: list[Any], refs: dict[int, list[int]], layer: str, batch_size: int, augment: int, seed: int
) -> dict[int, np.ndarray]:
    """Writer -> float ``(augment, references, F)`` features of ``augment`` distorted copies of
    each of its reference images (empty without ``augment``)."""
    from twinshot.writer_dependent import image_features

    copies: dict[int, np.ndarray] = {}
    if not augment:
        return copies
    order = sorted(refs)
    pool_paths = [images[i].path for w in order for i in refs[w]]
    aug = image_features(model, pool_paths, layer, batch_size=batch_size, copies=augment, seed=seed)
    aug = aug.reshape(augment, len(pool_paths), -1)
    start = 0
    for w in order:
        copies[w] = aug[:, start : start + len(refs[w])]
        start += len(refs[w])
    return copies
