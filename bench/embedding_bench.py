"""Embedding and enrollment throughput: torch eager vs torch.compile vs ONNX Runtime.

    python -m bench.embedding_bench                          # batch 1 and 256, 3 engines, enrollment
    python -m bench.embedding_bench --model omniglot-koch    # a shipped model or checkpoint
    python -m bench.embedding_bench --tiny                   # a few seconds (used by the tests)

**Embedding throughput** (images/s): the model's encoder on the same float32 input
``(B, C, H, W)`` (already preprocessed) at each batch size, through

* ``eager``: ``encoder(x)`` under ``torch.inference_mode()``;
* ``compile``: ``torch.compile(encoder)`` (inductor, static shapes: one compilation per
  batch size, whose time is reported as ``setup_s``);
* ``onnxruntime``: the encoder exported by :func:`twinshot.export.export_model` (parity
  checked) and run by ONNX Runtime's CPU provider, as :class:`twinshot.export.OnnxEmbedder` runs it.

All engines use the same number of threads (``--threads``, default all cores). Each
figure is measured ``--repeats`` times; a repeat runs the batch enough times to last
``--min-time`` seconds, after a warm-up. The JSON gives the median, quartiles, min and max
of the repeats, and each engine's max |difference| of embeddings from eager.

**Enrollment throughput** (identities/s, one image each) into a persisted gallery file
(:class:`twinshot.gallery.Gallery`): ``--enroll N`` synthetic 105x105 PNG "characters",
one folder per identity, enrolled

* ``folder``: with :meth:`Gallery.enroll_folder` (parallel decode, batched embedding, one
  transaction), N identities per repeat;
* ``one_by_one``: with :meth:`Gallery.enroll` per identity (one transaction each), as an
  application enrolling users as they arrive, ``min(N, --enroll-single)`` identities.

Each repeat enrolls into a fresh gallery file (creating it is not timed).

The model is ``--model`` if given, else a shipped model if the package has one, else the
compact Omniglot-style encoder (4 blocks of 64, 28x28, euclidean head) with seeded
random weights: throughput does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

ENGINES = ("eager", "compile", "onnxruntime")
ENROLL_MODES = ("folder", "one_by_one")


# -- the model -------------------------------------------------------------------------------


def default_model(tiny: bool = False) -> tuple[Any, str]:
    """The benchmark's model and how it is named: the first shipped model that needs no face
    detection (synthetic images have no face) if there is one, else
    the compact Omniglot-style encoder (``tiny``: 2 blocks of 8) with seeded weights."""
    from twinshot.data.images import Preprocessing
    from twinshot.models import ModelSpec, build_model, load_model, shipped_models

    if not tiny:
        for name in shipped_models():  # the first that takes any picture (a face model needs a face)
            model = load_model(name)
            if not model.preprocessing.align:
                return model, name
    widths = [8, 8] if tiny else [64, 64, 64, 64]
    torch.manual_seed(0)
    spec = ModelSpec(
        encoder="compact",
        encoder_params={"widths": widths},
        head="euclidean",
        preprocessing=Preprocessing(size=(28, 28), invert=True),
    )
    return build_model(spec).eval(), f"compact {widths}, 28x28, euclidean (random weights)"


def _load(ref: str | None, tiny: bool) -> tuple[Any, str]:
    if ref is None:
        return default_model(tiny)
    from twinshot.models import load_model

    return load_model(ref), ref


# -- statistics ------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max of repeated measurements."""
    v = sorted(float(x) for x in values)
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0], v[0], v[0]]
    return {"median": statistics.median(v), "p25": q[0], "p75": q[2], "min": v[0], "max": v[-1], "repeats": len(v)}


def rates(fn: Callable[[], Any], items: int, *, repeats: int, min_time: float, warmup: int = 2) -> list[float]:
    """Items per second of ``fn`` (which handles ``items`` items), ``repeats`` times; each
    repeat calls ``fn`` enough times to last about ``min_time`` seconds."""
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    calls = max(1, math.ceil(min_time / once))
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append(calls * items / (time.perf_counter() - t))
    return out


# -- embedding throughput --------------------------------------------------------------------


def embedding_throughput(
    model: Any,
    *,
    batch_sizes: Sequence[int] = (1, 256),
    engines: Sequence[str] = ENGINES,
    repeats: int = 7,
    min_time: float = 0.5,
    threads: int | None = None,
    workdir: str | os.PathLike | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Images/s of the model's encoder at each batch size through each engine.

    Returns one dict per (engine, batch size): ``engine``, ``batch_size``,
    ``images_per_s`` (:func:`summary`), ``setup_s`` (compilation or export), and
    ``max_abs_diff`` of the embeddings from eager.
    """
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"unknown engine(s) {', '.join(unknown)}; valid: {', '.join(ENGINES)}")
    threads = threads or os.cpu_count() or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    encoder = model.encoder.eval()
    p = model.preprocessing
    g = torch.Generator().manual_seed(seed)
    inputs = {
        b: p.to_float(torch.randint(0, 256, (b, p.channels, *p.size), generator=g, dtype=torch.uint8))
        for b in batch_sizes
    }
    with torch.inference_mode():
        reference = {b: encoder(x).numpy() for b, x in inputs.items()}
    results: list[dict[str, Any]] = []

    def record(engine: str, b: int, fn: Callable[[], Any], setup: float, out: np.ndarray) -> None:
        results.append({
            "engine": engine,
            "batch_size": b,
            "images_per_s": summary(rates(fn, b, repeats=repeats, min_time=min_time)),
            "setup_s": setup,
            "max_abs_diff": float(np.max(np.abs(np.asarray(out, np.float64) - reference[b]))),
        })

    try:
        for engine in engines:
            if engine == "eager":
                for b, x in inputs.items():
                    def fn(x: torch.Tensor = x) -> torch.Tensor:
                        with torch.inference_mode():
                            return encoder(x)

                    record("eager", b, fn, 0.0, fn().numpy())
            elif engine == "compile":
                compiled = torch.compile(encoder, dynamic=False)
                for b, x in inputs.items():
                    def fn(x: torch.Tensor = x) -> torch.Tensor:
                        with torch.inference_mode():
                            return compiled(x)

                    t = time.perf_counter()
                    out = fn().numpy()  # compiles for this batch size
                    record("compile", b, fn, time.perf_counter() - t, out)
            else:
                from twinshot.export import OnnxEmbedder, export_model

                with tempfile.TemporaryDirectory(dir=workdir) as tmp:
                    t = time.perf_counter()
                    export_model(model, "onnx", Path(tmp) / "encoder.onnx")
                    embedder = OnnxEmbedder(Path(tmp) / "encoder.onnx", threads=threads)
                    setup = time.perf_counter() - t
                    session, name = embedder.session, embedder.session.get_inputs()[0].name
                    for b, x in inputs.items():
                        feed = {name: x.numpy()}

                        def fn(feed: dict[str, np.ndarray] = feed) -> np.ndarray:
                            return session.run(None, feed)[0]

                        record("onnxruntime", b, fn, setup, fn())
    finally:
        torch.set_num_threads(previous_threads)
    return results


# -- enrollment throughput -------------------------------------------------------------------


def _character(rng: np.random.Generator, size: int = 105) -> np.ndarray:
    """A synthetic Omniglot-like 'character': a few black strokes on white paper."""
    img = np.full((size, size), 255, np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        r, c = rng.integers(10, size - 10, 2)
        dr, dc = rng.integers(-2, 3, 2)
        for _ in range(int(rng.integers(15, 40))):
            img[max(0, r - 2) : r + 2, max(0, c - 2) : c + 2] = 0
            r, c = int(np.clip(r + dr, 2, size - 3)), int(np.clip(c + dc, 2, size - 3))
    return img


def write_identities(root: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` identity folders ``root/idNNNNNN/0.png`` with one 105x105 1-bit PNG each."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        folder = root / f"id{i:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "0.png"
        Image.fromarray(_character(rng)).convert("1").save(path)
        files.append(path)
    return files


def enrollment_throughput(
    model: Any,
    *,
    n_identities: int = 2000,
    n_single: int = 200,
    repeats: int = 3,
    modes: Sequence[str] = ENROLL_MODES,
    threads: int | None = None,
    workdir: str | os.PathLike | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Identities/s enrolled into a fresh persisted gallery, one image each (see the
    module docstring for the modes). Returns one dict per mode with
    ``identities_per_s`` (:func:`summary`) and ``identities`` per repeat."""
    from twinshot.gallery import Gallery

    threads = threads or os.cpu_count() or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    results = []
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            root = Path(tmp) / "identities"
            files = write_identities(root, n_identities, seed)
            for mode in modes:
                n = n_identities if mode == "folder" else min(n_identities, n_single)
                values = []
                for r in range(repeats):
                    db = Path(tmp) / f"{mode}-{r}.db"
                    with Gallery.create(db, model) as gallery:
                        t = time.perf_counter()
                        if mode == "folder":
                            gallery.enroll_folder(root, workers=threads)
                        else:
                            for path in files[:n]:
                                gallery.enroll(path.parent.name, path)
                        values.append(n / (time.perf_counter() - t))
                        assert len(gallery) == n, (len(gallery), n)
                    db.unlink(missing_ok=True)
                results.append({"mode": mode, "identities": n, "identities_per_s": summary(values)})
    finally:
        torch.set_num_threads(previous_threads)
    return results


# -- the command -----------------------------------------------------------------------------


def machine(threads: int) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import twinshot

    versions = {"python": platform.python_version(), "twinshot": twinshot.__version__, "torch": torch.__version__, "numpy": np.__version__}
    for pkg in ("onnxruntime", "onnx", "onnxscript"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "platform": platform.platform(),
            "load_1min_at_start": load, "versions": versions}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.embedding_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a shipped model, checkpoint or run directory (default: see the docstring)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--engines", nargs="+", default=None, choices=ENGINES, help="default: all (--tiny: no compile)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per repeat")
    ap.add_argument("--threads", type=int, default=None, help="threads of every engine (default: all cores)")
    ap.add_argument("--enroll", type=int, default=2000, help="identities to enroll (0: skip enrollment)")
    ap.add_argument("--enroll-single", type=int, default=200, help="identities enrolled one by one")
    ap.add_argument("--enroll-repeats", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="tiny model and sizes, 1 thread, no torch.compile: a few seconds")
    ap.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.tiny:
        args.batch_sizes, args.repeats, args.min_time = [1, 4], 2, 0.01
        args.enroll, args.enroll_single, args.enroll_repeats = min(args.enroll, 12), min(args.enroll_single, 4), 1
        args.threads = args.threads or 1
    if args.engines is None:
        args.engines = [e for e in ENGINES if not (args.tiny and e == "compile")]
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the results (and write ``--json``)."""
    args = parse_args(argv)
    model, name = _load(args.model, args.tiny)
    threads = args.threads or os.cpu_count() or 1
    command = "python -m bench.embedding_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {
        "benchmark": "embedding",
        "command": command.strip(),
        "machine": machine(threads),
        "model": name,
        "embedding_dim": int(model.embedding_dim),
        "input_shape": [model.preprocessing.channels, *model.preprocessing.size],
        "settings": {"repeats": args.repeats, "min_time_s": args.min_time, "batch_sizes": args.batch_sizes, "engines": args.engines},
    }
    started = time.perf_counter()
    report["embedding"] = embedding_throughput(
        model, batch_sizes=args.batch_sizes, engines=args.engines, repeats=args.repeats,
        min_time=args.min_time, threads=threads,
    )
    best = {}
    for b in args.batch_sizes:
        rows = [r for r in report["embedding"] if r["batch_size"] == b]
        if rows:
            best[str(b)] = max(rows, key=lambda r: r["images_per_s"]["median"])["engine"]
    report["fastest_engine"] = best
    report["enrollment"] = (
        enrollment_throughput(
            model, n_identities=args.enroll, n_single=args.enroll_single, repeats=args.enroll_repeats, threads=threads,
        )
        if args.enroll > 0
        else []
    )
    report["seconds"] = round(time.perf_counter() - started, 2)
    text = json.dumps(report, indent=2)
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    for r in report["embedding"]:
        s = r["images_per_s"]
        print(f"{r['engine']:>12} batch {r['batch_size']:>4}: {s['median']:>10.0f} images/s "
              f"(min {s['min']:.0f}, max {s['max']:.0f}; setup {r['setup_s']:.1f} s; max|diff| {r['max_abs_diff']:.1e})")
    for r in report["enrollment"]:
        s = r["identities_per_s"]
        print(f"{'enroll ' + r['mode']:>20}: {s['median']:>8.0f} identities/s (min {s['min']:.0f}, max {s['max']:.0f}; {r['identities']} identities)")
    return report


if __name__ == "__main__":
    main()
