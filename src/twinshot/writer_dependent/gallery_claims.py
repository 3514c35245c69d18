"""Claimed-identity verification in a gallery scored by the claimed identity's own SVM.

``Gallery.verify_claim(identity, image, scoring="svm")`` (``twinshot gallery verify
--scoring svm``, ``POST /v1/verify`` with ``scoring=svm``) answers "is this signature the
claimed client's?" with a writer-dependent classifier (Hafemann et al. 2017; see
:mod:`twinshot.writer_dependent.classifier`) instead of the distance to the nearest
reference:

* positives: the identity's reference **images** kept in the gallery (so the gallery must
  be created with ``keep_images``), at the model's ``layer`` (``grid`` by default), plus
  ``augment`` mildly distorted copies of each (seeded);
* negatives, the **cohort**: genuine signatures of people who are not the identity. By
  default the kept references of every *other* identity of the gallery (at most
  ``max_cohort`` of them, a seeded sample); or images given by the caller (e.g. writers
  who are not enrolled, as in ``twinshot evaluate cedar-claims --scoring svm``);
* features standardised with the cohort's statistics; the score is the SVM's decision
  value (higher is more genuine), accepted when ``score >= threshold`` (``0.0``, the SVM's
  own boundary, unless given). There is no calibrated probability (``None``).

``scoring="fused"`` (``--scoring fused``, ``scoring=fused``) adds the pair model named by
the gallery model's stored claims fusion (:mod:`twinshot.writer_dependent.fusion`; e.g.
``signatures-cedar`` stores ``signatures-cedar-pairs`` and its weight): the questioned image
against each kept reference image, combined and weighted, added to the SVM's score;
accepted at the fusion's stored threshold unless one is given.

A fitted classifier is cached per identity together with the ids of the references and of
the cohort it was fitted on; when the identity's references change (re-enrolled, added to,
removed) or the cohort changes, it is fitted again. Features of kept images are cached by
embedding id, so a refit only runs the network on new images. The cache is thread-safe.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from twinshot.errors import ConfigError, DataError
from twinshot.writer_dependent.classifier import Standardiser, SVMConfig, WriterClassifier

if TYPE_CHECKING:  # pragma: no cover
    from twinshot.gallery.gallery import Gallery

#: How ``Gallery.verify_claim`` scores a claim: the gallery's distance rule, or the SVM here.
CLAIM_SCORINGS: tuple[str, ...] = ("distance", "svm", "fused")


@dataclass(frozen=True)
class SVMClaimConfig:
    """The writer-dependent scoring of claims.

    Attributes:
        layer: the model's features (see :data:`twinshot.writer_dependent.FEATURE_LAYERS`).
        augment: distorted copies of each reference added to the positives (0: none).
        seed: seeds the distortions and the cohort sample.
        svm: the SVM's ``C`` and ``gamma``.
        threshold: accept when the decision value reaches it (0: the SVM's boundary).
        max_cohort: at most this many cohort images (a seeded sample of the other identities').
        max_cached: identities whose fitted classifier is kept in memory (least recent dropped).
    """

    layer: str = "grid"
    augment: int = 10
    seed: int = 0
    svm: SVMConfig = field(default_factory=SVMConfig)
    threshold: float = 0.0
    max_cohort: int = 1000
    max_cached: int = 256

    def __post_init__(self) -> None:
        from twinshot.writer_dependent.features import FEATURE_LAYERS

        if self.layer not in FEATURE_LAYERS:
            raise ConfigError(f"unknown feature layer {self.layer!r}; valid: {', '.join(FEATURE_LAYERS)}")
        if self.augment < 0:
            raise ConfigError(f"augment must be >= 0, got {self.augment}")
        if self.max_cohort < 2:
            raise ConfigError(f"max_cohort must be >= 2, got {self.max_cohort}")
        if self.max_cached < 1:
            raise ConfigError(f"max_cached must be >= 1, got {self.max_cached}")
        if not np.isfinite(self.threshold):
            raise ConfigError(f"threshold must be a finite number, got {self.threshold}")


@dataclass(frozen=True)
class SVMClaimVerification:
    """The answer to one claim scored by the identity's SVM.

    Attributes:
        identity: the claimed identity.
        same: ``score >= threshold``: the claim is accepted.
        score: the SVM's decision value (higher is more genuine; not a logit).
        threshold: the threshold used.
        references: the identity's references the SVM was fitted on.
        cohort: the cohort images (negatives) it was fitted on.
        layer: the model's features.
        rule: ``"svm"``, or ``"fused"`` when the score also holds the weighted pair scores.
    """

    identity: str
    same: bool
    score: float
    threshold: float
    references: int
    cohort: int
    layer: str
    rule: str = "svm"
    probability: None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity, "same": self.same, "score": self.score, "probability": None,
            "threshold": self.threshold, "rule": self.rule, "references": self.references,
            "cohort": self.cohort, "layer": self.layer, "scoring": self.rule,
        }


def _torch_model(gallery: "Gallery") -> Any:
    """The gallery's model as a torch :class:`SiameseNetwork` (the SVM needs inner layers)."""
    from twinshot.gallery.embedding import TorchEmbedder

    embedder = gallery.embedder
    if isinstance(embedder, TorchEmbedder):
        return embedder.model
    ref = gallery.model_ref
    if not ref or str(ref).endswith(".onnx"):
        raise ConfigError(
            f"{gallery.path}: svm scoring needs the gallery's torch model (its inner layers), "
            f"not an ONNX export; open the gallery with its checkpoint or shipped model"
        )
    from twinshot.models.io import fingerprint, load_model

    model = load_model(ref)
    if fingerprint(model) != gallery.fingerprint:
        raise ConfigError(f"{gallery.path}: the model at {ref} is not the gallery's (fingerprint differs)")
    return model.eval()


class WriterSVMClaims:
    """Claims against one gallery scored by per-identity SVMs; see the module.

    Args:
        gallery: an open gallery created with ``keep_images``.
        config: the scoring (default :class:`SVMClaimConfig`).
        cohort: images (paths, bytes, arrays) of people who are not enrolled, the
            negatives of every identity's SVM; default: the other identities' references.
        model: the gallery's torch model (default: the gallery's, loaded when it runs on ONNX).
    """

    def __init__(
        self,
        gallery: "Gallery",
        config: SVMClaimConfig | None = None,
        *,
        cohort: Sequence[Any] | None = None,
        model: Any = None,
    ) -> None:
        if not gallery.keep_images:
            raise ConfigError(
                f"{gallery.path}: svm scoring fits each identity's classifier on its reference images, "
                f"and this gallery does not keep them; create it with keep_images (--keep-images)"
            )
        if cohort is not None and len(cohort) < 2:
            raise DataError(f"the svm cohort needs at least two images, got {len(cohort)}")
        self.gallery = gallery
        self.config = config or SVMClaimConfig()
        self._cohort_sources = list(cohort) if cohort is not None else None
        self._model = model
        self._own_model = model is None
        self._fingerprint = gallery.fingerprint
        self._lock = threading.RLock()
        self._features: dict[int, np.ndarray] = {}  # embedding id -> (F,)
        self._cohort_features: np.ndarray | None = None
        self._pairs: tuple[Any, Any] | None = None  # (ClaimFusion, pair model), loaded on the first fused claim
        self._pair_embeddings: dict[int, Any] = {}  # embedding id -> the pair model's (D,)
        self._fitted: OrderedDict[str, tuple[tuple[Any, ...], WriterClassifier, int, int]] = OrderedDict()

    # -- features ---------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = _torch_model(self.gallery)
        return self._model

    def features(self, images: Sequence[Any], copies: int = 0, seed: int = 0) -> np.ndarray:
        """Features ``(N, F)`` of images (``(N * copies, F)`` distorted copies when ``copies``)."""
        from twinshot.writer_dependent.features import image_features

        return image_features(self.model, list(images), self.config.layer, copies=copies, seed=seed)

    def _missing(self, ids: Sequence[int]) -> list[int]:
        return [int(i) for i in ids if int(i) not in self._features]

    def _fetch(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Kept images by embedding id (under the gallery's lock)."""
        data = self.gallery._store.images([int(i) for i in ids]) if len(ids) else {}
        lost = [int(i) for i in ids if int(i) not in data]
        if lost:
            raise DataError(f"{self.gallery.path}: no kept image for embedding(s) {lost[:5]}; svm scoring needs every reference's image")
        return data

    def _stored_features(self, ids: Sequence[int], data: dict[int, bytes]) -> np.ndarray:
        """Features ``(N, F)`` of kept images by embedding id, each computed once (from ``data``)."""
        missing = self._missing(ids)
        if missing:
            for i, f in zip(missing, self.features([data[i] for i in missing])):
                self._features[i] = f
        return np.stack([self._features[int(i)] for i in ids])

    def _cohort_ids(self, identity_id: int) -> np.ndarray | None:
        """The embedding ids of ``identity_id``'s cohort (None: the given cohort images)."""
        if self._cohort_sources is not None:
            return None
        g = self.gallery
        ids = np.asarray(g._ids)[np.asarray(g._identity_ids) != identity_id]
        if len(ids) > self.config.max_cohort:
            rng = np.random.default_rng(self.config.seed)
            ids = np.sort(rng.choice(ids, self.config.max_cohort, replace=False))
        if len(ids) < 2:
            raise DataError(
                f"{g.path}: svm scoring needs a cohort of at least two references of other identities "
                f"(or cohort images given); the gallery has {len(ids)}"
            )
        return ids

    def _references_of(self, identity: str) -> tuple[int, np.ndarray]:
        """``identity``'s store id and the ids of its reference images (call under the
        gallery's lock, after its refresh).

        Raises:
            UnknownIdentity: when ``identity`` is not enrolled (or has no references).
        """
        from twinshot.gallery.claims import UnknownIdentity

        g = self.gallery
        ident_id = g._store.identity_id(identity)
        ref_ids = g._store.image_ids_of(ident_id) if ident_id is not None else np.zeros(0, np.int64)
        if ident_id is None or len(ref_ids) == 0:
            raise UnknownIdentity(f"identity {identity!r} is not enrolled in {g.path}")
        return int(ident_id), ref_ids

    # -- classifiers ------------------------------------------------------------------------

    def classifier(self, identity: str) -> tuple[WriterClassifier, int, int]:
        """The fitted SVM of ``identity``, its number of references and of cohort images.
        The gallery is locked only to read ids and kept images, not while the network runs.

        Raises:
            UnknownIdentity: when ``identity`` is not enrolled.
        """
        g = self.gallery
        with self._lock:
            with g._lock:
                g._refresh()
                if g.fingerprint != self._fingerprint:  # re-embedded into another model: start again
                    self._fingerprint = g.fingerprint
                    self._features.clear()
                    self._pair_embeddings.clear()
                    self._fitted.clear()
                    self._cohort_features = None
                    if self._own_model:
                        self._model = None
                ident_id, ref_ids = self._references_of(identity)
                cohort_ids = self._cohort_ids(ident_id)
                key = (tuple(int(i) for i in ref_ids), ("given",) if cohort_ids is None else tuple(int(i) for i in cohort_ids))
                cached = self._fitted.get(identity)
                if cached is not None and cached[0] == key:
                    self._fitted.move_to_end(identity)
                    return cached[1], cached[2], cached[3]
                wanted = set(self._missing(ref_ids)) | set(self._missing(cohort_ids if cohort_ids is not None else []))
                if self.config.augment:
                    wanted |= {int(i) for i in ref_ids}
                data = self._fetch(sorted(wanted))
            if cohort_ids is None:
                if self._cohort_features is None:
                    self._cohort_features = self.features(self._cohort_sources or [])
                cohort = self._cohort_features
            else:
                cohort = self._stored_features(cohort_ids, data)
            refs = self._stored_features(ref_ids, data)
            extra = None
            if self.config.augment:
                extra = self.features([data[int(i)] for i in ref_ids], copies=self.config.augment, seed=self.config.seed)
            clf = WriterClassifier(self.config.svm, Standardiser.fit(cohort)).fit(refs, cohort, extra)
            self._fitted[identity] = (key, clf, len(ref_ids), len(cohort))
            self._fitted.move_to_end(identity)
            while len(self._fitted) > self.config.max_cached:
                self._fitted.popitem(last=False)
            return clf, len(ref_ids), len(cohort)

    def verify(
        self, identity: str, images: Sequence[Any], *, threshold: float | None = None, fused: bool = False
    ) -> list[SVMClaimVerification]:
        """One :class:`SVMClaimVerification` per image of ``images``, all claiming ``identity``;
        with ``fused``, the SVM's score plus the stored fusion's weighted pair scores (the
        default threshold is then the fusion's).

        Raises:
            UnknownIdentity: when ``identity`` is not enrolled.
            DataError: naming an image that cannot be read.
            ConfigError: ``fused`` with a gallery model that stores no claims fusion.
        """
        fusion = self.fusion()[0] if fused else None
        default = fusion.threshold if fusion is not None else self.config.threshold
        threshold = default if threshold is None else float(threshold)
        clf, n_refs, n_cohort = self.classifier(identity)
        scores = clf.decision_function(self.features(images))
        if fusion is not None:
            scores = fusion.fuse(scores, self.pair_scores(identity, images))
        rule = "fused" if fused else "svm"
        return [
            SVMClaimVerification(identity, bool(s >= threshold), float(s), threshold, n_refs, n_cohort, self.config.layer, rule)
            for s in scores.tolist()
        ]

    # -- fusion with a pair model -----------------------------------------------------------

    def fusion(self) -> tuple[Any, Any]:
        """The gallery model's stored :class:`~twinshot.writer_dependent.fusion.ClaimFusion`
        and its pair model (loaded once)."""
        from twinshot.writer_dependent.fusion import load_pairs_model, model_fusion

        with self._lock:
            if self._pairs is None:
                fusion = model_fusion(self.gallery.model_ref)
                self._pairs = (fusion, load_pairs_model(fusion))
            return self._pairs

    def pair_scores(self, identity: str, images: Sequence[Any]) -> np.ndarray:
        """The pair model's scores ``(Q, R)`` of ``images`` against ``identity``'s kept
        reference images (their pair embeddings computed once each)."""
        from twinshot.writer_dependent.fusion import embed_images, pair_scores

        pairs_model = self.fusion()[1]
        g = self.gallery
        with self._lock:
            with g._lock:
                g._refresh()
                ids = [int(i) for i in self._references_of(identity)[1]]
                missing = [i for i in ids if i not in self._pair_embeddings]
                data = self._fetch(missing)
            for i, e in zip(missing, embed_images(pairs_model, [data[i] for i in missing])):
                self._pair_embeddings[i] = e
            refs = torch.stack([self._pair_embeddings[i] for i in ids])
        return pair_scores(pairs_model, embed_images(pairs_model, list(images)), refs)


_PER_GALLERY: "weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], WriterSVMClaims]]" = weakref.WeakKeyDictionary()
_PER_GALLERY_LOCK = threading.Lock()


def cohort_images(folder: str | os.PathLike) -> list[Path]:
    """The image files under ``folder`` (recursively, sorted): a cohort for :class:`WriterSVMClaims`.

    Raises:
        DataError: when ``folder`` is not a folder or holds fewer than two images.
    """
    from twinshot.data.sources import IMAGE_EXTENSIONS

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: the cohort must be a folder of images")
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if len(found) < 2:
        raise DataError(f"{root}: the cohort needs at least two images, found {len(found)}")
    return found


def svm_claims(gallery: "Gallery", cohort: str | os.PathLike | Sequence[Any] | None = None) -> WriterSVMClaims:
    """The gallery's :class:`WriterSVMClaims` with the default config, created once per open
    gallery and cohort so its cache lives with them. ``cohort``: a folder of images
    (:func:`cohort_images`), a list of images, or None (the other identities' references)."""
    if isinstance(cohort, (str, os.PathLike)):
        cohort = cohort_images(cohort)
    key = tuple(str(c) for c in cohort) if cohort is not None else ()
    with _PER_GALLERY_LOCK:
        per = _PER_GALLERY.setdefault(gallery, {})
        scorer = per.get(key)
        if scorer is None:
            scorer = WriterSVMClaims(gallery, cohort=cohort)
            per[key] = scorer
        return scorer


def verify_claim_scored(
    gallery: "Gallery",
    identity: str,
    image: Any,
    scoring: str = "distance",
    *,
    threshold: float | None = None,
    cohort: str | os.PathLike | Sequence[Any] | None = None,
) -> Any:
    """Is ``image`` of ``identity``? Scored by the gallery's distance rule
    (``"distance"``: a :class:`twinshot.gallery.ClaimVerification`) or by the identity's SVM
    (``"svm"``: an :class:`SVMClaimVerification`, against ``cohort`` when given), or the SVM
    fused with the gallery model's stored pair model (``"fused"``)."""
    if scoring not in CLAIM_SCORINGS:
        raise ConfigError(f"unknown scoring {scoring!r}; valid: {', '.join(CLAIM_SCORINGS)}")
    if scoring == "distance":
        if cohort is not None:
            raise ConfigError("a cohort is only used by scoring 'svm' and 'fused'")
        return gallery.verify_claim(identity, image, threshold=threshold)
    (result,) = svm_claims(gallery, cohort).verify(identity, [image], threshold=threshold, fused=scoring == "fused")
    return result
