"""The service's settings: what it serves, its limits, its workers, where it audits."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from twinshot.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """What one request may carry. Each refusal is a 413 (sizes) or 422 (values) JSON
    error that names the limit (the field names below).

    Attributes:
        max_body_bytes: the whole request body, checked from ``Content-Length`` before
            reading and while reading (chunked uploads).
        max_pixels: width x height of one image, read from its header before it is
            decoded (decompression bombs never reach the decoder).
        max_images: image files in one request (enroll, search).
        max_k: candidates or neighbours one query may ask for.
        max_identity_chars: length of an identity's name.
        max_metadata_bytes: the JSON metadata stored with an identity.
    """

    max_body_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_images: int = 8
    max_k: int = 100
    max_identity_chars: int = 128
    max_metadata_bytes: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_pixels", "max_images", "max_k", "max_identity_chars", "max_metadata_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"limit {name} must be a whole number >= 1, got {value!r}")

    @staticmethod
    def body_bytes(megabytes: float) -> int:
        """``megabytes`` MiB as bytes, refusing NaN, infinities and sizes under one byte."""
        if not (isinstance(megabytes, (int, float)) and math.isfinite(megabytes) and megabytes * 1024 * 1024 >= 1):
            raise ConfigError(f"the body limit must be a finite size > 0 MiB, got {megabytes!r}")
        return int(megabytes * 1024 * 1024)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything :func:`twinshot.service.create_app` needs.

    Attributes:
        gallery: the gallery file (create it first with ``twinshot gallery create``).
        model: the model to open it with; ``None``: the one stored with the gallery.
        limits: request limits (:class:`Limits`).
        audit_log: where enroll and delete are recorded (JSON lines); ``None``: the
            gallery's path with ``.audit.log`` appended.
        decode_workers: threads that decode uploaded images (PIL releases the GIL).
        max_batch: identify queries embedded and searched together at most; concurrent
            requests waiting for the inference thread are batched up to this size.
        torch_threads: set torch's intra-op threads (process-wide) to this when the app is
            created; ``None`` leaves them. Small batches run fastest on one thread, and on
            a busy machine extra threads mostly wait for each other.
        scrub_on_delete: after a deletion, rewrite the file (``VACUUM``) and truncate its
            write-ahead log so no byte of the deleted embeddings is left in either.
        index: the gallery's search index (``"auto"``, ``"exact"`` or ``"hnsw"``).
        inference: the runtime that embeds images (``"auto"``, ``"torch"`` or ``"onnx"``;
            see :mod:`twinshot.gallery.inference`).
        search: where the gallery's rows are searched: ``"memory"``, ``"database"`` or ``"auto"``
            (see :mod:`twinshot.gallery.search_db`).
        readonly: serve the gallery read-only (identify, verify, search, list); enroll and
            delete answer 503. A gallery file or folder this process cannot write is served
            read-only anyway, and the service says so at start-up.
    """

    gallery: Path | str
    model: str | None = None
    limits: Limits = field(default_factory=Limits)
    audit_log: Path | None = None
    decode_workers: int = max(1, min(4, os.cpu_count() or 1))
    max_batch: int = 64
    torch_threads: int | None = None
    scrub_on_delete: bool = True
    index: str = "auto"
    inference: str = "auto"
    readonly: bool = False
    search: str = "auto"

    def __post_init__(self) -> None:
        from twinshot.gallery.stores import is_uri

        if not is_uri(self.gallery):  # a store URI stays a string (a Path would fold its '//')
            object.__setattr__(self, "gallery", Path(self.gallery))
        if self.audit_log is not None:
            object.__setattr__(self, "audit_log", Path(self.audit_log))
        if self.decode_workers < 1 or self.max_batch < 1:
            raise ConfigError("decode_workers and max_batch must be >= 1")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"torch_threads must be >= 1, got {self.torch_threads}")

    @property
    def audit_path(self) -> Path:
        """The audit log's path (the explicit one, or ``<gallery>.audit.log``; for a
        database store, ``<table or collection>.audit.log`` in the working directory)."""
        if isinstance(self.gallery, str):
            from twinshot.gallery.stores import parse

            return self.audit_log or Path(f"{parse(self.gallery).name}.audit.log")
        return self.audit_log or self.gallery.with_name(self.gallery.name + ".audit.log")
