"""Load benchmark of the door-entry service: latency and throughput of ``POST /v1/identify``
with concurrent clients against ``twinshot serve`` on 127.0.0.1.

    python -m bench.service_load                      # 10,000 identities, 32 clients, 30 s
    python -m bench.service_load --tiny               # a few seconds (used by the tests)
    python -m bench.service_load --model MODEL --identities 100000 --clients 64 --duration 60

What it does:

1. builds a gallery of ``--identities`` identities, one reference each: 1% of them (at most
   64, half the 128 query images) are the embeddings of query images, so that those
   queries are recognised, the rest random unit vectors of the model's dimension, enrolled
   in one transaction (enrolling is not what this measures);
2. starts ``twinshot serve`` (``python -m twinshot.cli.serve serve ...``) in its own process
   on a free port of 127.0.0.1, with a read key in its keys file;
3. runs ``--clients`` concurrent clients (one asyncio task and one keep-alive connection
   each, a minimal HTTP/1.1 client so that the load generator takes little of the CPU),
   every client sending one identify request (a ``--size`` x ``--size`` grey PNG,
   multipart) as soon as its previous answer arrived, for ``--duration`` seconds after
   ``--warmup`` seconds (or until ``--max-requests``);
4. reports the client-side latency percentiles (p50, p90, p99, max), the throughput, the
   status codes, the CPU time per request of the server and of the client, and the
   server's batching counters (``GET /v1/info``).

The model is ``--model`` (a shipped model name or a checkpoint) or, by default, the
project's default architecture (``ModelSpec()``: Conv-4, 28x28 grey, 64-d, cosine head)
with seeded random weights: its speed is what a trained one of that shape has. The load
generator runs on the same machine as the server and shares its CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _query_images(n: int, size: int, seed: int = 0) -> list[bytes]:
    """``n`` grey PNGs of random strokes (drawing-like), ``size`` x ``size``."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = Image.new("L", (size, size), 255)
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(4, size - 4, 4))
            draw.line((x0, y0, x1, y1), fill=0, width=max(2, size // 30))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _model(directory: Path, ref: str | None) -> str:
    """The model reference to serve: ``ref``, or the default architecture saved under
    ``directory`` with seeded random weights."""
    if ref:
        return ref
    import torch

    from twinshot.models import ModelSpec, build_model, save_model

    torch.manual_seed(0)
    save_model(build_model(ModelSpec()).eval(), directory)
    return str(directory)


def build_gallery(path: Path, model: str, n: int, queries: list[bytes], seed: int = 0) -> dict[str, Any]:
    """Create the gallery: ``n`` identities, the first ``max(1, n // 100)`` enrolled with the
    query images' embeddings, the rest random unit vectors; one transaction."""
    from twinshot.gallery import Gallery

    t = time.perf_counter()
    with Gallery.create(path, model, overwrite=True) as g:
        known = min(len(queries) // 2, max(1, n // 100))
        real = g.embed(queries[:known])
        rng = np.random.default_rng(seed)
        rest = rng.standard_normal((n - known, g.dim)).astype(np.float32)
        rest /= np.linalg.norm(rest, axis=1, keepdims=True)
        vectors = np.concatenate([real, rest])
        g.enroll_many((f"person-{i:06d}", vectors[i : i + 1], None, None) for i in range(n))
        self_score = g.identify_embeddings(real[:1], k=1)[0].score  # an image against itself
        g.set_threshold(self_score - 0.5)
        dim = g.dim
    return {"identities": n, "recognisable": known, "dim": dim, "build_s": round(time.perf_counter() - t, 2)}


def start_server(gallery: Path, keys: Path, args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    """``twinshot serve`` in a child process; returns it and its URL once it listens."""
    command = [
        sys.executable, "-m", "twinshot.cli.serve", "serve", str(gallery), "--keys", str(keys),
        "--host", "127.0.0.1", "--port", "0", "--log-level", "warning",
        "--workers", str(args.workers), "--max-batch", str(args.max_batch),
    ]
    if args.torch_threads:
        command += ["--torch-threads", str(args.torch_threads)]
    if args.inference:
        command += ["--inference", args.inference]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError(f"the server did not start; its log:\n{log.read_text()[-2000:]}")


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of this process (or of process ``pid``, from /proc)."""
    if pid is None:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def identify_request(host: str, port: int, key: str, image: bytes, k: int = 5) -> bytes:
    """One complete HTTP/1.1 keep-alive request ``POST /v1/identify`` (multipart), as bytes."""
    boundary = "twinshotbench7c1d"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"query.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST /v1/identify?k={k} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(v) for n, _, v in (line.partition(":") for line in lines[1:]) if n.lower() == "content-length"), 0)
    return status, await reader.readexactly(length)


async def _load(url: str, key: str, images: list[bytes], args: argparse.Namespace, server_pid: int | None = None) -> dict[str, Any]:
    """Drive the server with ``args.clients`` keep-alive connections. The client is a
    minimal HTTP/1.1 one over asyncio streams (requests built once, responses read by
    Content-Length), so that it spends little of the CPU it shares with the server."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
    requests = [identify_request(host, port, key, image) for image in images]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    sent = 0
    t_start = time.perf_counter()
    t_measure = t_start + args.warmup
    t_end = t_measure + args.duration
    cpu: dict[str, float] = {}

    async def mark_cpu() -> None:
        await asyncio.sleep(args.warmup)
        cpu["client"], cpu["server"] = _cpu_seconds(), _cpu_seconds(server_pid) if server_pid else float("nan")

    async def worker(i: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        j = i
        try:
            while time.perf_counter() < t_end and sent < args.max_requests:
                request = requests[j % len(requests)]
                j += args.clients
                t = time.perf_counter()
                try:
                    writer.write(request)
                    code, _ = await asyncio.wait_for(read_response(reader), 30)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                    errors.append(type(exc).__name__)
                    code = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                done = time.perf_counter()
                if t >= t_measure:
                    sent += 1
                    latencies.append(done - t)
                    statuses[code] = statuses.get(code, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(mark_cpu(), *(worker(i) for i in range(args.clients)))
    elapsed = time.perf_counter() - t_measure
    client_cpu = _cpu_seconds() - cpu["client"]
    server_cpu = (_cpu_seconds(server_pid) - cpu["server"]) if server_pid else float("nan")
    request = urllib.request.Request(url + "/v1/info", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        info = json.loads(r.read())
    lat = np.array(latencies) * 1000
    batching = info.get("batching", {})
    return {
        "requests": int(lat.size),
        "seconds": round(elapsed, 2),
        "throughput_rps": round(lat.size / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p90": round(float(np.percentile(lat, 90)), 2) if lat.size else None,
            "p99": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
            "mean": round(float(lat.mean()), 2) if lat.size else None,
            "max": round(float(lat.max()), 2) if lat.size else None,
        },
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "client_errors": sorted(set(errors)),
        "server_cpu_ms_per_request": round(1000 * server_cpu / lat.size, 2) if lat.size and server_cpu == server_cpu else None,
        "client_cpu_ms_per_request": round(1000 * client_cpu / lat.size, 2) if lat.size else None,
        "server_batches": batching.get("batches"),
        "server_mean_batch": round(batching["queries"] / batching["batches"], 2) if batching.get("batches") else None,
        "server_largest_batch": batching.get("largest"),
        "threshold": info.get("threshold"),
    }


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0, help="Measured seconds (after the warm-up).")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of load before measuring.")
    parser.add_argument("--max-requests", type=int, default=200_000, help="Stop measuring after this many requests.")
    parser.add_argument("--size", type=int, default=105, help="Side of the query PNGs, in pixels.")
    parser.add_argument("--model", default=None, help="A shipped model or checkpoint (default: ModelSpec() with random weights).")
    parser.add_argument("--workers", type=int, default=2, help="The server's decode threads (--workers).")
    parser.add_argument("--max-batch", type=int, default=64, help="The server's --max-batch.")
    parser.add_argument("--torch-threads", type=int, default=None, help="The server's --torch-threads (default: its default, half the CPUs).")
    parser.add_argument("--inference", default=None, help="The server's --inference: auto, torch or onnx (default: its default).")
    parser.add_argument("--workdir", type=Path, default=None, help="Where the gallery goes (default: a temp dir).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this file.")
    parser.add_argument("--tiny", action="store_true", help="A few seconds: 300 identities, 4 clients, 1.5 s.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.identities, args.clients, args.duration, args.warmup, args.size = 300, 4, 1.5, 0.3, 64
    from twinshot.service.keys import add_key

    out: dict[str, Any] = {
        "command": "python -m bench.service_load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("json", "workdir")},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        images = _query_images(128, args.size)
        model = _model(workdir / "model", args.model)
        out["gallery"] = build_gallery(workdir / "load.db", model, args.identities, images)
        key = add_key(workdir / "keys.json", "bench", "read")
        proc, url = start_server(workdir / "load.db", workdir / "keys.json", args, workdir / "server.log")
        try:
            out["results"] = asyncio.run(_load(url, key, images, args, proc.pid))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out["server_exit"] = proc.returncode
        out["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
