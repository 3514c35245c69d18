"""Which kernels run exact search on *this* machine, chosen by measurement.

Exact search is a matrix product of the queries with every stored row, then a top-k of
each row of scores, in chunks of rows (:func:`twinshot.gallery.index.chunked_topk`). Which
product (numpy's BLAS or torch's) and which top-k (numpy or torch), and how large a chunk,
is fastest depends on the CPU and its BLAS: on a 2-core AMD EPYC torch's product of one
query against 1M rows took 137 ms and numpy's 56 ms, while an Intel AMX machine favoured
torch. So the choice is not a default: :func:`resolve_plan` times every candidate on a
small synthetic table (about half a second, once) and caches the winner per machine
(CPU model, thread counts, library versions) in :data:`DEFAULT_CACHE`, a file in the
user's cache directory (never in the repository), and in memory for the process.

Results never depend on the engine: the engine only proposes candidates; their scores,
their order (ties by row) and the boundary of the top-k are settled by one fixed exact
routine (see :meth:`twinshot.gallery.index.ExactIndex.search`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twinshot.errors import ConfigError

#: Where measured plans are cached, one entry per machine key (see :func:`machine_key`).
DEFAULT_CACHE = Path.home() / ".cache" / "twinshot" / "search-engines.json"
#: Galleries with fewer rows than this use :data:`DEFAULT_ENGINE` without measuring
#: (any engine takes well under a millisecond there).
CALIBRATE_ABOVE = 8192
#: Query counts at or above this use the plan's ``batch`` engine, below it ``single``.
BATCH_QUERIES = 8
#: Chunk sizes (scores materialised at once) tried by the calibration.
CHUNK_CHOICES = (1 << 19, 1 << 21, 1 << 23)


@dataclass(frozen=True)
class SearchEngine:
    """The kernels of exact search.

    Attributes:
        matmul: ``"torch"`` or ``"numpy"``: who computes ``queries @ rows.T``.
        topk: ``"torch"`` or ``"numpy"``: who selects the best columns.
        chunk_elements: at most this many scores (queries x rows) at once.
    """

    matmul: str = "torch"
    topk: str = "torch"
    chunk_elements: int = 1 << 21

    def __post_init__(self) -> None:
        for what, value in (("matmul", self.matmul), ("topk", self.topk)):
            if value not in ("torch", "numpy"):
                raise ConfigError(f"search engine {what} must be 'torch' or 'numpy', got {value!r}")
        if self.chunk_elements < 1:
            raise ConfigError("chunk_elements must be at least 1")

    @property
    def name(self) -> str:
        return f"{self.matmul}-matmul+{self.topk}-topk/{self.chunk_elements}"

    def needs_torch(self) -> bool:
        return "torch" in (self.matmul, self.topk)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchEngine:
        return cls(str(d["matmul"]), str(d["topk"]), int(d["chunk_elements"]))


#: Named engines (a registry): what ``ExactIndex(engine=NAME)`` accepts besides ``"auto"``.
ENGINES: dict[str, SearchEngine] = {
    "torch": SearchEngine("torch", "torch"),
    "numpy": SearchEngine("numpy", "numpy"),
    "numpy-matmul+torch-topk": SearchEngine("numpy", "torch"),
    "torch-matmul+numpy-topk": SearchEngine("torch", "numpy"),
}
#: Used for small galleries, and always when torch is not imported it is ``"numpy"``.
DEFAULT_ENGINE = ENGINES["torch"]


@dataclass(frozen=True)
class EnginePlan:
    """One engine for single queries (fewer than :data:`BATCH_QUERIES`), one for batches."""

    single: SearchEngine
    batch: SearchEngine
    source: str = "default"  # "default", "named", "measured" or "cached"

    def for_queries(self, n_queries: int) -> SearchEngine:
        return self.batch if n_queries >= BATCH_QUERIES else self.single

    def to_dict(self) -> dict[str, Any]:
        return {"single": self.single.to_dict(), "batch": self.batch.to_dict(), "source": self.source}


def _torch_loaded() -> bool:
    return "torch" in sys.modules


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_key(width: int) -> str:
    """What a measured plan depends on: CPU model, CPUs, torch threads, library versions,
    the stored row width."""
    parts = [cpu_model(), f"cpus={os.cpu_count()}", f"numpy={np.__version__}", f"w={width}"]
    if _torch_loaded():
        import torch

        parts += [f"torch={torch.__version__}", f"threads={torch.get_num_threads()}"]
    else:
        parts.append("torch=absent")
    return " | ".join(parts)


def _candidates() -> list[SearchEngine]:
    """The product x top-k combinations, at the default chunk size."""
    kinds = ("numpy", "torch") if _torch_loaded() else ("numpy",)
    return [SearchEngine(m, t, DEFAULT_ENGINE.chunk_elements) for m in kinds for t in kinds]


def _fastest(cands: list[SearchEngine], q: np.ndarray, stored: np.ndarray, k: int, repeats: int) -> tuple[SearchEngine, dict[str, float]]:
    """The candidate with the lowest median time, and every median (seconds). Timed
    round-robin, so a machine that slows down mid-way slows all alike."""
    from twinshot.gallery.index import chunked_topk

    times: dict[str, list[float]] = {c.name: [] for c in cands}
    for c in cands:  # warm-up
        chunked_topk(c, q, stored, k, 1.0)
    for _ in range(repeats):
        for c in cands:
            t = time.perf_counter()
            chunked_topk(c, q, stored, k, 1.0)
            times[c.name].append(time.perf_counter() - t)
    medians = {n: float(np.median(v)) for n, v in times.items()}
    return min(cands, key=lambda c: (medians[c.name], c.name)), medians


def measure(width: int, *, repeats: int = 3, seed: int = 0, k: int = 26) -> tuple[EnginePlan, dict[str, Any]]:
    """Time the candidate engines on a synthetic table (16 MB) for one query and for a
    batch of 32: first every product x top-k pair, then the winner at each chunk size of
    :data:`CHUNK_CHOICES`. Returns the fastest for each and the medians (ms) measured."""
    rng = np.random.default_rng(seed)
    rows = max(4096, min(1 << 16, (16 << 20) // (4 * max(1, width))))
    stored = rng.standard_normal((rows, width)).astype(np.float32)
    workloads = {"single": rng.standard_normal((1, width)).astype(np.float32), "batch": rng.standard_normal((32, width)).astype(np.float32)}
    best: dict[str, SearchEngine] = {}
    report: dict[str, Any] = {"rows": rows, "width": width}
    for name, q in workloads.items():
        pair, medians = _fastest(_candidates(), q, stored, k, repeats)
        chunks = [SearchEngine(pair.matmul, pair.topk, c) for c in CHUNK_CHOICES if c != pair.chunk_elements]
        if chunks:
            best[name], more = _fastest([pair, *chunks], q, stored, k, repeats)
            medians.update(more)
        else:
            best[name] = pair
        report[name] = {n: round(1e3 * v, 3) for n, v in sorted(medians.items(), key=lambda kv: kv[1])}
    return EnginePlan(best["single"], best["batch"], "measured"), report


_memo: dict[str, EnginePlan] = {}


def _read_cache(path: Path, key: str) -> EnginePlan | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))[key]
        return EnginePlan(SearchEngine.from_dict(entry["single"]), SearchEngine.from_dict(entry["batch"]), "cached")
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None


def _write_cache(path: Path, key: str, plan: EnginePlan, report: dict[str, Any]) -> None:
    """Add ``key``'s plan to the cache file (atomically); an unwritable cache is ignored."""
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[key] = {**plan.to_dict(), "measured_ms": report, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


def resolve_plan(engine: str | SearchEngine | EnginePlan, width: int, n_rows: int, *, cache: Path | None = None) -> EnginePlan:
    """The plan for ``engine``: a plan or engine as given, a name of :data:`ENGINES`, or
    ``"auto"``: numpy when torch is not imported (search never imports it); the default
    below :data:`CALIBRATE_ABOVE` rows; else the plan measured on this machine (memory,
    then the cache file, else :func:`measure` now and cache it)."""
    if isinstance(engine, EnginePlan):
        return engine
    if isinstance(engine, SearchEngine):
        chosen = engine
    elif engine == "auto":
        if not _torch_loaded():
            chosen = ENGINES["numpy"]
        elif n_rows < CALIBRATE_ABOVE:
            return EnginePlan(DEFAULT_ENGINE, DEFAULT_ENGINE, "default")
        else:
            return measured_plan(width, cache=cache)
    elif engine in ENGINES:
        chosen = ENGINES[engine]
    else:
        raise ConfigError(f"unknown search engine {engine!r}; valid: auto, {', '.join(ENGINES)}")
    if chosen.needs_torch() and not _torch_loaded():
        chosen = SearchEngine("numpy", "numpy", chosen.chunk_elements)  # never import torch for search
    return EnginePlan(chosen, chosen, "named")


def measured_plan(width: int, *, cache: Path | None = None) -> EnginePlan:
    """This machine's measured plan for rows of ``width`` columns (see :func:`resolve_plan`)."""
    path = DEFAULT_CACHE if cache is None else cache
    key = machine_key(width)
    plan = _memo.get(key) or _read_cache(path, key)
    if plan is None:
        plan, report = measure(width)
        _write_cache(path, key, plan, report)
    _memo[key] = plan
    return plan
