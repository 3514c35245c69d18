"""Soak test of the door-entry service: mixed identify / enroll / delete from many clients,
plus CLI readers of the same gallery file in other processes, for a few minutes on
127.0.0.1; reports errors, latency percentiles per operation and the server's memory over
time.

    python -m bench.soak                          # 32 clients, 2 CLI readers, 120 s
    python -m bench.soak --duration 600 --out runs/soak.json
    python -m bench.soak --tiny                   # a few seconds (used by the tests)

What it does:

1. builds a gallery of ``--identities`` identities (as ``bench.service_load`` does: a few
   are the embeddings of query images, the rest random unit vectors), model: the
   project's default architecture with seeded random weights (``ModelSpec()``);
2. starts ``twinshot serve`` in its own process (loopback only, one torch thread);
3. runs ``--clients`` keep-alive clients: each request is identify (``--identify`` share),
   else an enroll of a new name or a delete of one this client enrolled earlier (so every
   request has one right answer: 200);
4. meanwhile ``--readers`` processes run ``twinshot gallery list GALLERY --json`` one after
   another (each a fresh process reading the live file);
5. samples the server's resident memory (``VmRSS``) every ``--sample`` seconds;
6. at the end checks the file (``twinshot gallery check``) and that every enroll and
   delete answered 200 is in it.

Bounded: every loop ends at ``--duration`` (or ``--max-requests``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bench.service_load import _model, _query_images, build_gallery, identify_request, machine, read_response, start_server


def _multipart(host: str, port: int, key: str, method: str, path: str, image: bytes | None) -> bytes:
    boundary = "twinshotsoak5e2a"
    body = b""
    if image is not None:
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"ref.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n"
        ).encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
    if image is not None:
        head += f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reader_loop(gallery: Path, until: float) -> dict[str, Any]:
    """Run ``twinshot gallery list GALLERY --json`` in fresh processes until ``until``."""
    ok, failed, last_error = 0, 0, ""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    while time.time() < until:
        r = subprocess.run(
            [sys.executable, "-c", "from twinshot.cli.main import main; main()", "gallery", "list", str(gallery), "--json"],
            capture_output=True, text=True, env=env, timeout=300,
        )
        if r.returncode == 0 and json.loads(r.stdout)["n_identities"] >= 0:
            ok += 1
        else:
            failed += 1
            last_error = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    return {"runs": ok + failed, "failed": failed, "last_error": last_error}


async def _load(url: str, key: str, images: list[bytes], args: argparse.Namespace, server_pid: int) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
    identify = [identify_request(host, port, key, image) for image in images]
    latencies: dict[str, list[float]] = {"identify": [], "enroll": [], "delete": []}
    statuses: dict[str, dict[int, int]] = {op: {} for op in latencies}
    errors: list[str] = []
    confirmed: dict[str, set[str]] = {"enrolled": set(), "deleted": set()}
    memory: list[tuple[float, float]] = []
    sent = 0
    t0 = time.perf_counter()
    t_end = t0 + args.duration

    async def sample() -> None:
        while time.perf_counter() < t_end:
            memory.append((round(time.perf_counter() - t0, 1), round(rss_mb(server_pid), 1)))
            await asyncio.sleep(args.sample)
        memory.append((round(time.perf_counter() - t0, 1), round(rss_mb(server_pid), 1)))

    async def worker(i: int) -> None:
        nonlocal sent
        rng = np.random.default_rng(1000 + i)
        mine: list[str] = []
        n = 0
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while time.perf_counter() < t_end and sent < args.max_requests:
                roll = rng.random()
                if roll < args.identify:
                    op, request, name = "identify", identify[int(rng.integers(len(identify)))], ""
                elif mine and roll >= (1 + args.identify) / 2:
                    op, name = "delete", mine.pop(0)
                    request = _multipart(host, port, key, "DELETE", f"/v1/identities/{name}", None)
                else:
                    op, name = "enroll", f"soak-{i}-{n}"
                    n += 1
                    image = images[int(rng.integers(len(images)))]
                    request = _multipart(host, port, key, "POST", f"/v1/identities/{name}/images", image)
                t = time.perf_counter()
                try:
                    writer.write(request)
                    code, _ = await asyncio.wait_for(read_response(reader), 60)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                    errors.append(f"{op}: {type(exc).__name__}")
                    code = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                latencies[op].append(time.perf_counter() - t)
                statuses[op][code] = statuses[op].get(code, 0) + 1
                sent += 1
                if code == 200 and op == "enroll":
                    mine.append(name)
                    confirmed["enrolled"].add(name)
                elif code == 200 and op == "delete":
                    confirmed["deleted"].add(name)
                    confirmed["enrolled"].discard(name)
        finally:
            writer.close()

    await asyncio.gather(sample(), *(worker(i) for i in range(args.clients)))
    elapsed = time.perf_counter() - t0

    def pct(values: list[float]) -> dict[str, Any]:
        a = np.array(values) * 1000
        if not a.size:
            return {"n": 0}
        return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1), "max_ms": round(float(a.max()), 1)}

    return {
        "seconds": round(elapsed, 1),
        "requests": sent,
        "throughput_rps": round(sent / elapsed, 1),
        "latency": {op: pct(v) for op, v in latencies.items()},
        "statuses": {op: {str(k): v for k, v in sorted(s.items())} for op, s in statuses.items()},
        "non_2xx": sum(v for s in statuses.values() for k, v in s.items() if not 200 <= k < 300),
        "client_errors": errors[:20],
        "server_rss_mb": memory,
        "_confirmed": confirmed,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="Seconds of load.")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--readers", type=int, default=2, help="Processes running `twinshot gallery list` in a loop.")
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--identify", type=float, default=0.8, help="Share of identify requests (the rest: enroll/delete).")
    parser.add_argument("--max-requests", type=int, default=10**9)
    parser.add_argument("--sample", type=float, default=10.0, help="Seconds between memory samples.")
    parser.add_argument("--size", type=int, default=105, help="Side of the query PNGs.")
    parser.add_argument("--tiny", action="store_true", help="A few seconds: 4 clients, 1 reader, 100 identities.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON result here.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.duration, args.clients, args.readers, args.identities, args.sample = 6.0, 4, 1, 100, 2.0
    from twinshot.gallery import check_gallery, describe
    from twinshot.service.keys import add_key

    with tempfile.TemporaryDirectory(prefix="twinshot-soak-") as tmp:
        work = Path(tmp)
        model = _model(work / "model", None)
        images = _query_images(64, args.size)
        gallery = work / "soak.db"
        built = build_gallery(gallery, model, args.identities, images)
        key = add_key(work / "keys.json", "soak", "admin")
        ns = argparse.Namespace(workers=2, max_batch=64, torch_threads=1, inference=None)
        proc, url = start_server(gallery, work / "keys.json", ns, work / "server.log")
        readers: list[Any] = []
        try:
            from concurrent.futures import ThreadPoolExecutor

            until = time.time() + args.duration
            with ThreadPoolExecutor(max(1, args.readers)) as pool:
                readers = [pool.submit(_reader_loop, gallery, until) for _ in range(args.readers)]
                result = asyncio.run(_load(url, key, images, args, proc.pid))
                reader_results = [r.result() for r in readers]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        confirmed = result.pop("_confirmed")
        report = check_gallery(gallery)
        names = {r["name"] for r in describe(gallery)["identities"]}
        lost = sorted(confirmed["enrolled"] - names) + sorted(confirmed["deleted"] & names)
        rss = [m for _, m in result["server_rss_mb"]]
        out = {
            "command": "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
            "gallery": built,
            "clients": args.clients,
            **result,
            "server_rss_mb_first_last_max": [rss[0], rss[-1], max(rss)] if rss else None,
            "cli_readers": reader_results,
            "gallery_check_ok": report.ok,
            "gallery_check_problems": report.problems,
            "confirmed_changes": result["statuses"]["enroll"].get("200", 0) + result["statuses"]["delete"].get("200", 0),
            "lost_confirmed_changes": len(lost),
            "machine": machine(),
        }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
