"""Loading a labelled image set from a folder of class folders or from a .zip of one.

Layout: a *class* is a folder that directly contains images; its *group* is the path of
its parent folder relative to the root. For Omniglot's
``images_background/<Alphabet>/characterNN/*.png`` this gives the class
``"<Alphabet>/characterNN"`` in the group ``"<Alphabet>"``; a flat ``root/<class>/*.png``
gives one group ``""``. A .zip with the same layout is read member by member (never
unpacked); a single top folder inside it (``images_background/``) is left out of names.

Everything is decoded once, through :func:`twinshot.data.images.load_image`, into one uint8
tensor ``(N, C, H, W)``, optionally cached on disk so that the next load is near-instant.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from twinshot.data.dataset import LabelledImages
from twinshot.data.images import DEFAULT_MAX_PIXELS, Preprocessing, load_image
from twinshot.errors import DataError

#: File extensions (lower case, with the dot) read as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".gif", ".webp"}
)

#: Bumped whenever the decoded result for the same input could change.
CACHE_VERSION = 1

#: Below this many images a process pool costs more than it saves.
MIN_IMAGES_FOR_POOL = 2000


@dataclass(frozen=True)
class ImageListing:
    """What a source holds, before decoding.

    Attributes:
        source: the folder or zip file.
        is_zip: whether ``source`` is a zip file.
        members: ``N`` locations of the images: paths relative to the folder (with ``/``),
            or member names inside the zip (full, including any top folder).
        labels: ``N`` class indices into ``class_names``.
        class_names: sorted class names (relative paths of the class folders).
        class_groups: for each class, its index into ``group_names``.
        group_names: sorted group names (relative paths of the class folders' parents).
    """

    source: Path
    is_zip: bool
    members: list[str]
    labels: list[int]
    class_names: list[str]
    class_groups: list[int]
    group_names: list[str]

    def label(self, i: int) -> str:
        """How image ``i`` is named in messages and in ``LabelledImages.paths``."""
        if self.is_zip:
            return f"{self.source}:{self.members[i]}"
        return str(self.source / self.members[i])


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _parts_key(name: str) -> tuple[str, ...]:
    return tuple(name.split("/")) if name else ()


def _build_listing(source: Path, is_zip: bool, entries: list[tuple[str, str]]) -> ImageListing:
    """``entries``: (class folder relative path, member) for every image, any order."""
    by_class: dict[str, list[str]] = {}
    for class_dir, member in entries:
        by_class.setdefault(class_dir, []).append(member)
    kind = "zip file" if is_zip else "folder"
    if "" in by_class:
        n = len(by_class[""])
        raise DataError(
            f"{source}: {n} image(s) lie directly in the {kind}, not in class sub-folders; "
            f"put each class's images in its own sub-folder"
        )
    class_names = sorted(by_class, key=_parts_key)
    group_of = {c: c.rpartition("/")[0] for c in class_names}
    group_names = sorted(set(group_of.values()), key=_parts_key)
    group_index = {g: i for i, g in enumerate(group_names)}
    members: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        files = sorted(by_class[name])
        members.extend(files)
        labels.extend([label] * len(files))
    return ImageListing(
        source=source,
        is_zip=is_zip,
        members=members,
        labels=labels,
        class_names=class_names,
        class_groups=[group_index[group_of[c]] for c in class_names],
        group_names=group_names,
    )


def _no_images(source: Path, kind: str) -> DataError:
    exts = ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
    return DataError(f"{source}: no images in the {kind} or its sub-folders (looked for {exts})")


def list_folder(root: Path) -> ImageListing:
    """List the images of a folder of class folders (hidden entries are ignored)."""
    entries: list[tuple[str, str]] = []
    anything = False

    def on_error(exc: OSError) -> None:
        raise DataError(f"{exc.filename}: cannot read folder ({exc.strerror})")

    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop, or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        visible = [f for f in filenames if not _hidden(f)]
        anything = anything or bool(dirnames) or bool(visible)
        rel = Path(dirpath).relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        for f in visible:
            if _is_image(f):
                entries.append((rel, f"{rel}/{f}" if rel else f))
    if not anything:
        raise DataError(f"{root}: empty folder")
    if not entries:
        raise _no_images(root, "folder")
    return _build_listing(root, False, entries)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip file ({exc})") from None


def list_zip(path: Path) -> ImageListing:
    """List the images of a zip holding class folders, skipping a single top folder."""
    with _open_zip(path) as zf:
        infos = zf.infolist()
    found: list[tuple[list[str], str]] = []
    for info in infos:
        if info.is_dir():
            continue
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
        if not parts or any(_hidden(p) for p in parts) or not _is_image(parts[-1]):
            continue
        found.append((parts, info.filename))
    if not found:
        if not any(not i.is_dir() for i in infos):
            raise DataError(f"{path}: empty zip file")
        raise _no_images(path, "zip file")
    tops = {parts[0] for parts, _ in found}
    strip = 1 if len(tops) == 1 and all(len(parts) >= 3 for parts, _ in found) else 0
    entries = [("/".join(parts[strip:-1]), member) for parts, member in found]
    return _build_listing(path, True, entries)


def list_images(source: str | os.PathLike) -> ImageListing:
    """List a folder or zip of class folders, with the errors of :func:`load_dataset`."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such folder or zip file")
    if path.is_dir():
        return list_folder(path)
    if path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
        return list_zip(path)
    raise DataError(f"{path}: not a folder or a .zip file")


# ---------------------------------------------------------------------------------------
# Decoding


#: The zip file a worker process reads from, opened once by :func:`_worker_init`. Each
#: process opens its own: a forked child must not share the parent's file offset.
_worker_zip: zipfile.ZipFile | None = None


def _worker_init(source: str, is_zip: bool) -> None:
    global _worker_zip
    torch.set_num_threads(1)
    _worker_zip = zipfile.ZipFile(source) if is_zip else None


def _decode_one(
    source: str,
    zf: zipfile.ZipFile | None,
    member: str,
    preprocessing: Preprocessing,
    max_pixels: int,
) -> torch.Tensor:
    """Decode one image of a folder (``zf`` None) or of the open zip ``zf``."""
    if zf is None:
        return load_image(os.path.join(source, member), preprocessing, max_pixels=max_pixels)
    label = f"{source}:{member}"
    try:
        data = zf.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise DataError(f"{label}: cannot read zip member ({exc})") from None
    try:
        return load_image(data, preprocessing, max_pixels=max_pixels)
    except DataError as exc:
        msg = str(exc)
        msg = label + msg[len("<bytes>") :] if msg.startswith("<bytes>") else f"{label}: {msg}"
        raise DataError(msg) from None


def _decode_chunk(
    source: str, members: Sequence[str], preprocessing: Preprocessing, max_pixels: int
) -> np.ndarray:
    """Decode ``members`` into uint8 ``(n, C, H, W)``; runs in a worker process."""
    h, w = preprocessing.size
    out = np.empty((len(members), preprocessing.channels, h, w), dtype=np.uint8)
    for i, member in enumerate(members):
        out[i] = _decode_one(source, _worker_zip, member, preprocessing, max_pixels).numpy()
    return out


def default_workers() -> int:
    """The CPUs this process may run on (``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def decode_listing(
    listing: ImageListing,
    preprocessing: Preprocessing,
    *,
    workers: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Decode every image of ``listing`` into one uint8 tensor ``(N, C, H, W)``.

    With ``workers > 1`` (and enough images) the work is spread over a process pool.
    ``on_progress(n)`` is called after each ``n`` more images are decoded.
    """
    n = len(listing.members)
    h, w = preprocessing.size
    images = torch.empty((n, preprocessing.channels, h, w), dtype=torch.uint8)
    source = str(listing.source)
    if workers <= 1 or n < MIN_IMAGES_FOR_POOL:
        with contextlib.ExitStack() as stack:
            zf = stack.enter_context(_open_zip(listing.source)) if listing.is_zip else None
            for start, stop in _chunks(n, 256):
                for i in range(start, stop):
                    images[i] = _decode_one(source, zf, listing.members[i], preprocessing, max_pixels)
                if on_progress is not None:
                    on_progress(stop - start)
        return images
    # A few chunks per worker balance the load; large enough to amortise the IPC.
    chunk = max(64, -(-n // (workers * 8)))
    workers = min(workers, -(-n // chunk))
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(source, listing.is_zip)
    ) as pool:
        futures = {
            pool.submit(_decode_chunk, source, listing.members[a:b], preprocessing, max_pixels): (a, b)
            for a, b in _chunks(n, chunk)
        }
        try:
            for future in as_completed(futures):
                a, b = futures.pop(future)  # drop the reference: the chunk is copied below
                images[a:b] = torch.from_numpy(future.result())
                if on_progress is not None:
                    on_progress(b - a)
        except BaseException:
            for future in list(futures):
                future.cancel()
            raise
    return images


# ---------------------------------------------------------------------------------------
# Cache


def _cache_key(
    source: Path, preprocessing: Preprocessing, max_pixels: int, members: Sequence[str] | None
) -> str:
    """Hash of what determines the decoded tensor: the preprocessing and the source's files,
    i.e. a zip's (path, size, mtime), or each image's (relative path, size, mtime) in a
    folder (``members``)."""
    h = hashlib.sha256()
    head = {
        "version": CACHE_VERSION,
        "source": str(source.resolve()),
        "preprocessing": preprocessing.to_dict(),
        "max_pixels": max_pixels,
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    if members is None:
        st = source.stat()
        h.update(f"file {st.st_size} {st.st_mtime_ns}".encode())
    else:
        for member in members:
            st = (source / member).stat()
            h.update(f"{member}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _cache_path(cache_dir: Path, source: Path, key: str) -> Path:
    stem = source.name or "dataset"
    return cache_dir / f"{stem}-{key[:24]}.safetensors"


def _read_cache(path: Path, key: str) -> LabelledImages | None:
    """The cached dataset, or None when the file is absent, stale or damaged.

    The images are a private (copy-on-write) memory map of the file, so this returns at
    once and pages are read on first use; writing to them never changes the file."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("twinshot", "null"))
            if not isinstance(meta, dict) or meta.get("key") != key:
                return None
            tensors = {name: f.get_tensor(name) for name in ("images", "labels", "class_groups")}
        return LabelledImages(
            images=tensors["images"],
            labels=tensors["labels"],
            class_names=list(meta["class_names"]),
            class_groups=tensors["class_groups"],
            group_names=list(meta["group_names"]),
            paths=list(meta["paths"]),
            preprocessing=Preprocessing.from_dict(meta["preprocessing"]),
        )
    except Exception:  # a damaged cache is rebuilt, never trusted
        return None


def _write_cache(path: Path, key: str, dataset: LabelledImages) -> None:
    """Write ``dataset`` to ``path`` atomically (temporary file, then ``os.replace``)."""
    from safetensors.torch import save_file

    meta = {
        "key": key,
        "class_names": dataset.class_names,
        "group_names": dataset.group_names,
        "paths": dataset.paths,
        "preprocessing": dataset.preprocessing.to_dict(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataError(f"{path.parent}: cannot write the dataset cache ({exc.strerror})") from None
    os.close(fd)
    try:
        save_file(
            {
                "images": dataset.images.contiguous(),
                "labels": dataset.labels.contiguous(),
                "class_groups": dataset.class_groups.contiguous(),
            },
            tmp,
            metadata={"twinshot": json.dumps(meta)},
        )
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the dataset cache ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------


def load_dataset(
    source: str | Path,
    preprocessing: Preprocessing,
    *,
    progress: bool = False,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LabelledImages:
    """Load every image of a folder (or zip) of class folders into memory.

    Args:
        source: a folder whose leaf folders hold each class's images (nested or not), or a
            .zip file with that layout. Ordering is deterministic: classes sorted by path,
            images sorted by name within a class.
        preprocessing: size, channels and ink inversion applied to every image.
        progress: show a progress bar (on stderr) while decoding.
        cache_dir: if given, the decoded tensor is kept there, keyed by the source's files
            (path, size, mtime) and ``preprocessing``; the next load reads it back.
        workers: processes used for decoding; ``None`` means one per CPU this process may
            use (``os.cpu_count()`` at most), 1 means decode in this process. Sets of fewer
            than ``MIN_IMAGES_FOR_POOL`` images are always decoded in-process.
        max_pixels: images larger than this are refused before decoding.

    Returns:
        The labelled images: ``images`` uint8 ``(N, C, H, W)``, ``labels`` ``(N,)``, class and
        group names, and ``paths`` naming each image (``"file.zip:member"`` inside a zip).

    Raises:
        DataError: one line naming the problem: a missing path, something that is not a
            folder or zip, an empty folder, no class sub-folders, no images, or an unreadable
            or truncated image (named).
    """
    path = Path(source).expanduser()
    cache_file: Path | None = None
    key = ""
    if cache_dir is not None and path.is_file():  # a zip is keyed without listing it
        key = _cache_key(path, preprocessing, max_pixels, None)
        cache_file = _cache_path(Path(cache_dir).expanduser(), path, key)
        cached = _read_cache(cache_file, key)
        if cached is not None:
            return cached
    listing = list_images(path)
    if cache_dir is not None and not listing.is_zip:
        key = _cache_key(path, preprocessing, max_pixels, listing.members)
        cache_file = _cache_path(Path(cache_dir).expanduser(), path, key)
        cached = _read_cache(cache_file, key)
        if cached is not None:
            return cached

    n_workers = default_workers() if workers is None else int(workers)
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task(f"decoding {listing.source.name}", total=len(listing.members))
            images = decode_listing(
                listing,
                preprocessing,
                workers=n_workers,
                max_pixels=max_pixels,
                on_progress=lambda k: bar.advance(task, k),
            )
    else:
        images = decode_listing(listing, preprocessing, workers=n_workers, max_pixels=max_pixels)

    dataset = LabelledImages(
        images=images,
        labels=torch.tensor(listing.labels, dtype=torch.long),
        class_names=list(listing.class_names),
        class_groups=torch.tensor(listing.class_groups, dtype=torch.long),
        group_names=list(listing.group_names),
        paths=[listing.label(i) for i in range(len(listing.members))],
        preprocessing=preprocessing,
    )
    if cache_file is not None:
        _write_cache(cache_file, key, dataset)
    return dataset
