"""Operations on a gallery *file* that need no loaded gallery: resolving and recording
the model, describing the file, removing an identity, and migrating to a new model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from twinshot.errors import TwinshotError
from twinshot.gallery.calibration import DEFAULT_THRESHOLD, Calibration
from twinshot.gallery.embedding import TorchEmbedder, as_embedder, embed_sources
from twinshot.gallery.audit import Actor, AuditEntry
from twinshot.gallery.identification import META_KEY as IDENTIFICATION_META
from twinshot.gallery.names import lookup_name
from twinshot.gallery.scorenorm import META_COHORT, META_NORM
from twinshot.gallery.store import GalleryStore, StoredRows
from twinshot.gallery.validate import read_settings

#: A model: a ``SiameseNetwork``, an :class:`Embedder` (e.g. ``OnnxEmbedder``), a ``.onnx``
#: file, a shipped model's name, or a checkpoint / training run directory.
ModelRef = Union[Any, str, os.PathLike]


def resolve_model(model: ModelRef, *, inference: str = "auto", cache_dir: str | os.PathLike | None = None) -> tuple[Any, str]:
    """The model that will run and the reference to store for it (a shipped name, an
    absolute checkpoint directory or ``.onnx`` file; ``""`` for a model that only lives in
    memory).

    The model is a :class:`twinshot.models.SiameseNetwork` when it runs on torch, else an
    :class:`Embedder` (an :class:`twinshot.export.OnnxEmbedder`); ``inference`` chooses
    (``"auto"``, ``"torch"``, ``"onnx"``; see :mod:`twinshot.gallery.inference`).
    """
    from twinshot.gallery.inference import load_embedder

    embedder, ref = load_embedder(model, inference=inference, cache_dir=cache_dir)
    return (embedder.model if isinstance(embedder, TorchEmbedder) else embedder), ref


def spec_json(model: Any) -> str:
    embedder = as_embedder(model)
    if isinstance(embedder, TorchEmbedder):
        m = embedder.model
        spec = m.spec.to_dict() if m.spec is not None else {"preprocessing": m.preprocessing.to_dict()}
    else:
        metadata = getattr(embedder, "metadata", {}) or {}
        spec = metadata.get("spec") or {"preprocessing": embedder.preprocessing.to_dict()}
    return json.dumps(spec, sort_keys=True)


def model_meta(model: Any, ref: str) -> dict[str, str]:
    embedder = as_embedder(model)
    return {
        "fingerprint": embedder.fingerprint,
        "model_spec": spec_json(embedder),
        "model_ref": ref,
        "dim": str(embedder.embedding_dim),
    }


def reembed_store(
    store: GalleryStore,
    model: Any,
    ref: str,
    *,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    actor: Actor | None = None,
) -> dict[str, Any]:
    meta = store.meta()
    if meta.get("keep_images") != "1":
        raise TwinshotError(
            f"{store.path}: the gallery was created without keeping images, so its references cannot be "
            f"re-embedded; enroll them again into a new gallery (create with --keep-images to allow this)"
        )
    had_norm = bool(meta.get(META_NORM, ""))
    rows = store.load_rows()
    n = rows.ids.size
    vectors = np.empty((n, model.embedding_dim), np.float32)
    step = 4096
    if progress is not None:
        progress(0, n)
    for a in range(0, n, step):
        ids = rows.ids[a : a + step]
        kept = store.images(ids.tolist())
        missing = [int(i) for i in ids if int(i) not in kept]
        if missing:
            raise TwinshotError(f"{store.path}: image {missing[0]} was not kept, so the gallery cannot be re-embedded")
        vectors[a : a + ids.size] = embed_sources(model, [kept[int(i)] for i in ids], batch_size=batch_size)
        if progress is not None:
            progress(min(n, a + step), n)
    store.rewrite_vectors(
        StoredRows(ids=rows.ids, identity_ids=rows.identity_ids, vectors=vectors),
        {
            **model_meta(model, ref),
            "threshold": repr(DEFAULT_THRESHOLD),
            "calibration": json.dumps(Calibration().to_dict()),
            "calibration_report": "",
            # the old model's scores: an FPIR record and a cohort of old embeddings no longer apply
            IDENTIFICATION_META: "",
            META_NORM: "",
            META_COHORT: "",
        },
        audit=AuditEntry("reembed", [], {"model": ref, "embeddings": int(n)}, actor or Actor()),
    )
    return {"gallery": str(store.path), "n_embeddings": int(n), "model": ref, "dim": int(model.embedding_dim), "calibration": "reset", "score_norm": "reset" if had_norm else "none"}


def reembed(
    path: str | os.PathLike,
    model: ModelRef,
    *,
    index: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    inference: str = "auto",
    actor: Actor | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Migrate the gallery file at ``path`` to ``model`` (its old model is not needed) and
    return it opened with the new model, plus a summary. See :meth:`Gallery.reembed`."""
    from twinshot.gallery.gallery import Gallery
    from twinshot.gallery.stores import open_store

    store = open_store(path)
    try:
        new_model, ref = resolve_model(model, inference=inference)
        summary = reembed_store(store, new_model, ref, progress=progress, actor=actor)
        return Gallery(store, new_model, index=index, actor=actor), summary
    except BaseException:
        store.close()
        raise


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """A gallery's settings and identities, read from the file alone (no model needed),
    read-only (the file is never written). An identity whose stored metadata cannot be read
    is listed with ``metadata: {}`` and a ``metadata_error``."""
    from twinshot.gallery.stores import open_store

    store = open_store(path, readonly=True)
    try:
        with store.snapshot():  # settings and identities from one snapshot
            meta = store.meta()
            settings = read_settings(meta, store.path)
            records = store.list_identities()
        return {
            "gallery": str(store.path),
            "model": meta.get("model_ref", ""),
            "fingerprint": meta.get("fingerprint", ""),
            "dim": store.dim,
            "keep_images": meta.get("keep_images") == "1",
            "rule": settings.rule,
            "threshold": settings.threshold,
            "calibration": settings.calibration.to_dict(),
            "calibration_report": settings.report.to_dict() if settings.report else None,
            "identification_calibration": json.loads(meta.get(IDENTIFICATION_META) or "null"),
            "n_identities": len(records),
            "n_embeddings": sum(r.references for r in records),
            "identities": [
                {
                    "name": r.name, "references": r.references, "metadata": r.metadata, "created": r.created,
                    **({"metadata_error": r.metadata_error} if r.metadata_error else {}),
                }
                for r in records
            ],
        }
    finally:
        store.close()


def remove_identity(path: str | os.PathLike, identity: str, *, actor: Actor | None = None) -> int:
    """Remove ``identity`` from the gallery file at ``path`` (no model needed), in one
    transaction with its audit record; returns how many references were removed."""
    from twinshot.gallery.stores import open_store

    store = open_store(path)
    try:
        name = lookup_name(identity)
        return int(store.remove_identity(name, audit=AuditEntry("remove", [name], {}, actor or Actor())).size)
    finally:
        store.close()
