"""The LFW protocol: k-fold verification accuracy with the threshold chosen on the other folds.

Labeled Faces in the Wild's View 2 ``pairs.txt`` (Huang et al. 2007) holds ``k`` folds of
``n`` matched and ``n`` mismatched pairs, in its own format::

    10<TAB>300                       (k folds, n pairs of each kind per fold)
    name<TAB>i<TAB>j                 (n matched pairs: name/name_000i.jpg, name/name_000j.jpg)
    name1<TAB>i<TAB>name2<TAB>j      (n mismatched pairs)
    ...                              (the next fold)

A header with one number ``n`` (``pairsDevTrain.txt``) is one fold. For each fold, the
threshold that maximises accuracy on the other folds' pairs is applied to it; the result is
the mean accuracy over folds +- its standard error (``std / sqrt(k)``, ``ddof=1``, as the LFW
README defines it). AUC, EER and TAR at FAR are pooled over every pair. A ``path1,path2,same``
CSV (as ``evaluate verification`` reads) works too: its optional ``fold`` column names the
folds, else its pairs are cut, in file order, into 10 contiguous folds.

LFW's photos are centred on the person they are labelled with, so a face-aligning model
embeds the face at the centre of each photo (``face = "centre"``), not its own choice (the
largest face, for a door camera), which in a crowded photo can be a bystander.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from twinshot.data.images import Preprocessing, load_image
from twinshot.errors import ConfigError, DataError
from twinshot.evaluation.episodes import embed_dataset, track
from twinshot.faces.align import NoFaceError
from twinshot.evaluation.pairs import Pair, read_pairs_csv
from twinshot.evaluation.verification import DEFAULT_FARS, VerificationResult, embed_sources, verification_metrics
from twinshot.models.siamese import SiameseNetwork

#: Which face of a photo is its person, for a face-aligning model (:func:`lfw_preprocessing`).
FACE_PICKS = ("centre", "model")
#: Folds a CSV without a ``fold`` column is cut into.
CSV_FOLDS = 10


def lfw_image(images: Path, name: str, number: str) -> Path:
    """``images/name/name_000N.jpg``."""
    return images / name / f"{name}_{int(number):04d}.jpg"


def read_lfw_pairs(path: str | os.PathLike, images: str | os.PathLike | None = None) -> list[list[Pair]]:
    """The folds of an official LFW pairs file (or a pairs CSV), each a list of pairs.

    Args:
        path: ``pairs.txt`` in the official format, or a CSV ``path1,path2,same[,fold]``.
        images: the folder of ``name/name_000N.jpg`` images (default: the pairs file's folder);
            ignored for a CSV (its relative paths resolve against its own folder).

    Raises:
        DataError: naming the file and line of a malformed entry.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such pairs file")
    if path.suffix.lower() == ".csv":
        return _csv_folds(path)
    root = Path(images) if images is not None else path.parent
    lines = [ln.rstrip("\r\n") for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    head = lines[0].split()
    try:
        k, n = (int(head[0]), int(head[1])) if len(head) == 2 else (1, int(head[0]))
    except (ValueError, IndexError):
        raise DataError(f"{path}, line 1: expected a header 'folds<TAB>pairs' or 'pairs', got {lines[0]!r}") from None
    if len(lines) - 1 != 2 * k * n:
        raise DataError(f"{path}: the header announces {k} fold(s) of {2 * n} pairs ({2 * k * n} lines), the file has {len(lines) - 1}")
    folds: list[list[Pair]] = []
    for f in range(k):
        fold = []
        for j in range(2 * n):
            lineno = 2 + f * 2 * n + j
            parts = lines[lineno - 1].split("\t") if "\t" in lines[lineno - 1] else lines[lineno - 1].split()
            same = j < n
            if same and len(parts) == 3:
                pair = Pair(lfw_image(root, parts[0], parts[1]), lfw_image(root, parts[0], parts[2]), True)
            elif not same and len(parts) == 4:
                pair = Pair(lfw_image(root, parts[0], parts[1]), lfw_image(root, parts[2], parts[3]), False)
            else:
                kind = "matched 'name i j'" if same else "mismatched 'name1 i name2 j'"
                raise DataError(f"{path}, line {lineno}: expected a {kind} pair, got {lines[lineno - 1]!r}")
            fold.append(pair)
        folds.append(fold)
    return folds


def _csv_folds(path: Path) -> list[list[Pair]]:
    pairs = read_pairs_csv(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        labels = [(row.get("fold") or "").strip() for row in reader] if "fold" in fields else None
    if labels is None:
        k = min(CSV_FOLDS, len(pairs))
        return [list(chunk) for chunk in np.array_split(np.array(pairs, dtype=object), k)]
    order: dict[str, list[Pair]] = {}
    for label, pair in zip(labels, pairs):
        order.setdefault(label, []).append(pair)
    return list(order.values())


def pair_arrays(folds: Sequence[Sequence[Pair]], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The folds' pairs as arrays over embedding rows: ``(i1, i2, same, fold_of)``, each ``(P,)``.

    Args:
        folds: lists of pairs (e.g. from :func:`read_lfw_pairs`, or a subset of its folds).
        index: row of each image path (``os.fspath``) in the embeddings.
    """
    pairs = [p for fold in folds for p in fold]
    i1 = np.array([index[os.fspath(p.path1)] for p in pairs], dtype=np.int64)
    i2 = np.array([index[os.fspath(p.path2)] for p in pairs], dtype=np.int64)
    same = np.array([bool(p.same) for p in pairs])
    fold_of = np.concatenate([np.full(len(f), k) for k, f in enumerate(folds)]) if folds else np.zeros(0, np.int64)
    return i1, i2, same, fold_of


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises accuracy when accepting ``score >= threshold``: the
    midpoint between the two scores that bracket the best cut (ties: the lowest cut)."""
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], same[order]
    # cut c rejects s[:c] and accepts s[c:]; correct = impostors below + genuine at/above
    below_impostor = np.r_[0, np.cumsum(~y)]
    above_genuine = y.sum() - np.r_[0, np.cumsum(y)]
    correct = below_impostor + above_genuine
    valid = np.r_[True, s[1:] != s[:-1], True]  # cut only between distinct scores
    c = int(np.argmax(np.where(valid, correct, -1)))
    if c == 0:
        return float(s[0] - 1.0)
    if c == len(s):
        return float(s[-1] + 1.0)
    return float((s[c - 1] + s[c]) / 2)


@dataclass(frozen=True)
class LfwFold:
    """One fold: its pairs, the threshold chosen on the other folds, accuracy at it."""

    fold: int
    n_pairs: int
    threshold: float
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return {"fold": self.fold, "n_pairs": self.n_pairs, "threshold": self.threshold, "accuracy": self.accuracy}


@dataclass(frozen=True)
class LfwResult:
    """The LFW protocol's result: mean accuracy over folds +- standard error, pooled ROC metrics."""

    accuracy: float
    standard_error: float
    folds: list[LfwFold] = field(default_factory=list)
    pooled: VerificationResult | None = None
    n_images: int = 0
    no_face: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": "lfw",
            "accuracy": self.accuracy,
            "standard_error": self.standard_error,
            "n_folds": len(self.folds),
            "n_pairs": sum(f.n_pairs for f in self.folds),
            "folds": [f.to_dict() for f in self.folds],
            "n_images": self.n_images,
            "n_no_face": len(self.no_face),
            "no_face": list(self.no_face),
        }
        if self.pooled is not None:
            pooled = self.pooled.to_dict()
            pooled.pop("protocol")
            out.update(pooled)
        return out


def lfw_protocol(scores: np.ndarray, same: np.ndarray, fold_of: np.ndarray, *, fars: Sequence[float] = DEFAULT_FARS) -> LfwResult:
    """The protocol from pair scores ``(P,)`` (higher is more alike), bool labels ``(P,)``
    and fold indices ``(P,)``. With one fold the threshold is chosen on that fold itself."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    fold_of = np.asarray(fold_of)
    ids = list(dict.fromkeys(fold_of.tolist()))
    folds = []
    for i, fid in enumerate(ids):
        test = fold_of == fid
        train = ~test if len(ids) > 1 else test
        t = best_threshold(scores[train], same[train])
        acc = float(((scores[test] >= t) == same[test]).mean())
        folds.append(LfwFold(fold=i + 1, n_pairs=int(test.sum()), threshold=t, accuracy=acc))
    accs = np.array([f.accuracy for f in folds])
    se = float(accs.std(ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else float("nan")
    return LfwResult(float(accs.mean()), se, folds, verification_metrics(scores, same, fars=fars))


def lfw_preprocessing(preprocessing: Preprocessing, face: str = "centre") -> Preprocessing:
    """The preprocessing LFW photos are embedded with: for a face-aligning model and
    ``face = "centre"``, its aligner picks the face at the photo's centre (LFW's photos are
    centred on the named person; :func:`twinshot.faces.align.detect_and_align`); ``"model"``
    keeps the model's own choice (the largest face for ``faces``)."""
    if face not in FACE_PICKS:
        raise ConfigError(f"unknown LFW face choice {face!r}; valid: {', '.join(FACE_PICKS)}")
    if face == "centre" and preprocessing.align == "face-api":
        return replace(preprocessing, align="face-api-centre")
    return preprocessing


def _embed(
    model: SiameseNetwork, paths: list[str], prep: Preprocessing, fallback_crop: float | None, batch_size: int, progress: bool
) -> tuple[torch.Tensor, list[str]]:
    """Embed images with ``prep``; with ``fallback_crop``, an image where the aligner finds no
    face is embedded from its centre crop instead (and named in the returned list)."""
    if not prep.align:
        return embed_sources(model, paths, batch_size=batch_size, progress=progress), []
    fallback = replace(prep, align="", crop=fallback_crop) if fallback_crop is not None else None
    no_face: list[str] = []
    chunks = []
    for i in track(range(0, len(paths), batch_size), total=-(-len(paths) // batch_size), description="aligning and embedding", enabled=progress):
        batch = []
        for path in paths[i : i + batch_size]:
            try:
                batch.append(load_image(path, prep))
            except NoFaceError:
                if fallback is None:
                    raise
                no_face.append(path)
                batch.append(load_image(path, fallback))
        chunks.append(embed_dataset(model, torch.stack(batch), batch_size=batch_size))
    return torch.cat(chunks, 0), no_face


def _cached_embeddings(
    model: SiameseNetwork, paths: list[str], prep: Preprocessing, cache: Path | None, fallback_crop: float | None, batch_size: int, progress: bool
) -> tuple[torch.Tensor, list[str]]:
    if cache is None:
        return _embed(model, paths, prep, fallback_crop, batch_size, progress)
    from twinshot.models.io import fingerprint

    key = f"{fingerprint(model)}\n{fallback_crop}\n{chr(10).join(paths)}"
    if prep != model.preprocessing:
        key += f"\n{json.dumps(prep.to_dict(), sort_keys=True)}"
    file = Path(cache) / f"embeddings-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    if file.is_file():
        with np.load(file) as data:
            return torch.from_numpy(data["embeddings"]), data["no_face"].tolist()
    emb, no_face = _embed(model, paths, prep, fallback_crop, batch_size, progress)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp.npz")
    np.savez(tmp, embeddings=emb.cpu().numpy(), no_face=np.array(no_face, dtype=str))
    os.replace(tmp, file)
    return emb, no_face


@torch.no_grad()
def lfw_embeddings(
    model: SiameseNetwork,
    paths: Sequence[str | os.PathLike],
    *,
    cache: str | os.PathLike | None = None,
    fallback_crop: float | None = None,
    face: str = "centre",
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """The embeddings ``(N, D)`` of LFW photos, as :func:`evaluate_lfw` embeds them (the
    model's preprocessing with ``face``'s pick, ``fallback_crop`` where no face is found),
    and the photos that fell back. ``cache`` is a folder keyed by the model's fingerprint
    and the photo list (in order): :func:`evaluate_lfw` with the same list reuses it."""
    prep = lfw_preprocessing(model.preprocessing, face)
    names = [os.fspath(p) for p in paths]
    return _cached_embeddings(model, names, prep, Path(cache) if cache is not None else None, fallback_crop, batch_size, progress)


def lfw_pair_photos(folds: Sequence[Sequence[Pair]]) -> dict[str, int]:
    """Each distinct photo of the folds' pairs (``os.fspath``), with its row: in pair order,
    the order :func:`evaluate_lfw` embeds (and caches) them in."""
    index: dict[str, int] = {}
    for fold in folds:
        for p in fold:
            for q in (p.path1, p.path2):
                index.setdefault(os.fspath(q), len(index))
    return index


@torch.no_grad()
def evaluate_lfw(
    model: SiameseNetwork,
    pairs_file: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: bool = False,
    cache: str | os.PathLike | None = None,
    fallback_crop: float | None = None,
    fars: Sequence[float] = DEFAULT_FARS,
    face: str = "centre",
) -> LfwResult:
    """The LFW protocol for ``model`` on a pairs file (see the module docstring).

    Each distinct image is decoded (with the model's preprocessing, alignment included) and
    embedded once; the score of a pair is the head's logit. ``cache`` is a folder where the
    embeddings are kept, keyed by the model's fingerprint and the image list. For a model
    that aligns faces, ``fallback_crop`` embeds an image where no face is found from its
    centre crop (that fraction of each side) instead of failing; their number is reported.
    ``face`` says which face of a photo is its person (:func:`lfw_preprocessing`): by
    default the one at the centre, as LFW's photos are made.

    Raises:
        DataError: for a malformed pairs file or an unreadable image (named).
    """
    folds = read_lfw_pairs(pairs_file, images)
    pairs = [p for fold in folds for p in fold]
    fold_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(folds)])
    index = lfw_pair_photos(folds)
    paths = list(index)
    emb, no_face = lfw_embeddings(model, paths, cache=cache, fallback_crop=fallback_crop, face=face, batch_size=batch_size, progress=progress)
    i1 = torch.tensor([index[os.fspath(p.path1)] for p in pairs])
    i2 = torch.tensor([index[os.fspath(p.path2)] for p in pairs])
    emb = emb.to(next(model.parameters()).device)
    scores = torch.cat([model.head(emb[i1[k : k + 1024]], emb[i2[k : k + 1024]]) for k in range(0, len(pairs), 1024)])
    same = np.fromiter((p.same for p in pairs), dtype=bool, count=len(pairs))
    result = lfw_protocol(scores.double().cpu().numpy(), same, fold_of, fars=fars)
    return replace(result, n_images=len(paths), no_face=no_face)
