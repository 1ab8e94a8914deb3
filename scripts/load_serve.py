#!/usr/bin/env python
"""A bounded load test of ``mlp-xp serve`` on loopback: requests/s and latency.

Starts ``mlp-xp serve MODEL --port 0`` (or uses ``--url`` of a running server on this
machine), then sends ``--requests`` requests from ``--concurrency`` concurrent clients
(HTTP/1.1 keep-alive, httpx): one-image JSON pixels, PNG uploads of drawn digits, and
with ``--hostile F`` that share of hostile ones (malformed JSON, bytes that are no image,
an image-bomb header, a body over the limit, wrong shapes). Every response must carry the
status its kind expects (200, or the 4xx the API promises): anything else -- a 5xx, a
dropped connection, a timeout -- is an error. Prints a table of p50/p99 latency per kind,
requests/s and the server's mean batch (images per forward pass, from ``/health``), then
stops the server with SIGTERM and checks it exits 0. Only loopback addresses are used.

    python scripts/load_serve.py runs/x/model.npz                   # 2,000 at 32, 10% hostile
    python scripts/load_serve.py model.npz --requests 500 --hostile 0 --json
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
import time
import zlib

import httpx
import numpy as np
from PIL import Image, ImageDraw


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _drawn(seed: int) -> bytes:
    """A digit-like stroke drawn dark on white, as the page sends it."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (280, 280), 255)
    points = [tuple(int(v) for v in rng.integers(40, 240, 2)) for _ in range(4)]
    ImageDraw.Draw(img).line(points, fill=0, width=18, joint="curve")
    return _png(img)


def _bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = (100_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 1024))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat


JSON = {"content-type": "application/json"}
PNG = {"content-type": "image/png"}


def kinds() -> dict:
    """name -> (body, headers, expected status)."""
    from mlp_xp.data import load_digits

    digits = load_digits("mnist-5k", "train", image_shape=(28, 28))
    pixels = json.dumps({"pixels": digits.images[7].tolist()}).encode()
    return {
        "json 28x28": (pixels, JSON, 200),
        "png drawing": (_drawn(0), PNG, 200),
        "bad JSON": (b'{"pixels": [[1, 2', JSON, 400),
        "wrong shape": (json.dumps({"pixels": [[0] * 27] * 28}).encode(), JSON, 400),
        "not an image": (os.urandom(2048), PNG, 400),
        "image bomb": (_bomb(), PNG, 400),
        "over the limit": (b"\0" * (8 * 2**20 + 1), PNG, 413),
    }


VALID = ["json 28x28", "png drawing"]
HOSTILE = ["bad JSON", "wrong shape", "not an image", "image bomb", "over the limit"]


def plan(n: int, hostile: float, seed: int = 0) -> list[str]:
    """The kinds of ``n`` requests: valid ones alternate, hostile ones mixed in at random."""
    rng = np.random.default_rng(seed)
    return [
        str(rng.choice(HOSTILE)) if rng.random() < hostile else VALID[i % len(VALID)]
        for i in range(n)
    ]


async def _run(url: str, order: list[str], concurrency: int, table: dict) -> tuple:
    latencies: dict = {k: [] for k in table}
    errors: list = []
    queue = list(enumerate(order))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker():
            while queue:
                _, kind = queue.pop()
                body, headers, expected = table[kind]
                start = time.perf_counter()
                try:
                    response = await client.post("/predict", content=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status = f"{type(exc).__name__}"
                latencies[kind].append(time.perf_counter() - start)
                if status != expected:
                    errors.append((kind, status))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        health = (await client.get("/health")).json()
    return latencies, errors, elapsed, health


def _ms(values: list, q: float) -> float:
    return 1000 * float(np.quantile(values, q)) if values else float("nan")


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp_xp", "serve", model, "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
    if not found:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, found.group(1)


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) a process has used so far, from Linux's /proc; else None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help="model file to serve (or --url)")
    p.add_argument("--url", default=None, help="a running server on loopback instead")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--hostile", type=float, default=0.1, help="share of hostile requests")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.url and not re.match(r"http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]", args.url):
        raise SystemExit("--url must be a loopback address (127.x.x.x, localhost or [::1])")
    if not (args.url or args.model):
        raise SystemExit("give a model file to serve, or --url of a running server")
    proc, url = (None, args.url) if args.url else start_server(args.model)
    try:
        table = kinds()
        order = plan(args.requests, args.hostile)
        pid = None if proc is None else proc.pid
        cpu_before = cpu_seconds(pid)
        latencies, errors, elapsed, health = asyncio.run(_run(url, order, args.concurrency, table))
        cpu = cpu_seconds(pid)
        server_cpu = None if cpu is None or cpu_before is None else cpu - cpu_before
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    every = [v for values in latencies.values() for v in values]
    result = {
        "requests": len(order),
        "concurrency": args.concurrency,
        "hostile_share": args.hostile,
        "errors": len(errors),
        "error_examples": errors[:5],
        "requests_per_s": len(order) / elapsed,
        "p50_ms": _ms(every, 0.5),
        "p99_ms": _ms(every, 0.99),
        "kinds": {
            k: {
                "count": len(v),
                "status": table[k][2],
                "p50_ms": _ms(v, 0.5),
                "p99_ms": _ms(v, 0.99),
            }
            for k, v in latencies.items()
            if v
        },
        "mean_batch": health["images"] / max(health["passes"], 1),
        "server_cpu_ms_per_request": None if server_cpu is None else 1000 * server_cpu / len(order),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "server_exit": None if proc is None else proc.returncode,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    _report(result)
    if args.json:
        print(json.dumps(result))
    return result


def _report(r: dict) -> None:
    print(
        f"{r['requests']} requests at {r['concurrency']} concurrent, "
        f"{100 * r['hostile_share']:.0f}% hostile: {r['errors']} errors, "
        f"{r['requests_per_s']:.0f} requests/s, p50 {r['p50_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms; {r['mean_batch']:.1f} images per forward pass"
    )
    if r["server_cpu_ms_per_request"] is not None:
        print(
            f"the server used {r['server_cpu_ms_per_request']:.1f} ms of CPU a request "
            f"(the client shares the machine; load average {r['load_average']:.1f})"
        )
    print("| request | status | count | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for kind, k in r["kinds"].items():
        print(f"| {kind} | {k['status']} | {k['count']} | {k['p50_ms']:.1f} | {k['p99_ms']:.1f} |")


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result["errors"] or result["server_exit"] not in (None, 0) else 0)
