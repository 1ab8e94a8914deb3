"""Honest device-speed comparison: the same network, seed and data on each backend.

Timing rules: a warm-up epoch is excluded; the device is synchronised before
every clock read (the training loop does this at epoch boundaries); each
configuration is timed over several epochs and the median is reported. The
large-matmul rate of the same device is measured in the same run, so achieved
GFLOP/s can be read as a fraction of what the hardware does on this process.
"""

from __future__ import annotations

import itertools
import statistics
import time

import numpy as np

from ..backend import Backend, get_backend, gpu_probe
from ..model import MLP
from ..train import TrainConfig, Trainer

__all__ = ["training_flops", "matmul_rate", "time_training", "run_bench", "format_table"]

NETWORK = (784, (300, 100), 10)


def training_flops(sizes: list[int]) -> int:
    """Matmul FLOPs per sample of one training step (forward + backward).

    Forward ``2 n_in n_out`` per layer; backward ``2 n_in n_out`` for dE/dW of
    every layer and again for dE/dx of every layer but the first.
    """
    pairs = list(itertools.pairwise(sizes))
    fwd = sum(2 * a * b for a, b in pairs)
    return fwd + fwd + sum(2 * a * b for a, b in pairs[1:])


def matmul_rate(backend: Backend, n: int | None = None, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n float32 matmul on ``backend`` (synchronised)."""
    n = n or (8192 if backend.kind == "gpu" else 2048)
    rng = np.random.default_rng(0)
    a, b = backend.put([rng.random((n, n), dtype=np.float32) for _ in range(2)])
    c = a @ b
    backend.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = a @ b
        backend.synchronize()
        times.append(time.perf_counter() - t0)
    del c
    return 2 * n**3 / statistics.median(times) / 1e9


def benchmark_trainer(
    backend: Backend, X, y, batch_size: int, epochs: int, augment: str = "none", seed: int = 0
) -> Trainer:
    """A trainer with the benchmark configuration: exactly ``mlp-xp train --optimizer sgd
    --momentum 0.9 --lr 0.05 --batch-size B --augment none`` (784-300-100-10, float32,
    L2 1e-4)."""
    model = MLP(*NETWORK, backend=backend, l2=1e-4, seed=seed)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer="sgd",
        momentum=0.9,
        lr=0.05,
        augment=augment,
        seed=seed,
    )
    return Trainer(model, X, y, config=config)


def time_training(
    backend: Backend,
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    repeats: int = 3,
    augment: str = "none",
    seed: int = 0,
) -> dict:
    """Median seconds per epoch of the benchmark configuration on ``backend``."""
    history = benchmark_trainer(backend, X, y, batch_size, 1 + repeats, augment, seed).run()
    seconds = statistics.median(history.seconds[1:])  # epoch 1 is the warm-up
    return {"epoch_seconds": seconds, "all_epoch_seconds": history.seconds, **backend.memory_info()}


def run_bench(
    devices=("cpu", "gpu"),
    batch_sizes=(32, 128, 512, 2048),
    samples: int = 60000,
    repeats: int = 3,
    data: str | None = None,
    augment_cost: bool = True,
    log=print,
) -> dict:
    """Time every available device on every batch size; see :func:`format_table`."""
    if data:
        from ..data import load_digits, scale_images

        digits = load_digits(data)
        X, y = scale_images(digits.images), digits.labels
        source = f"{data} ({len(y)} digits)"
    else:
        rng = np.random.default_rng(0)
        X = rng.random((samples, 784), dtype=np.float32)
        y = rng.integers(0, 10, samples)
        source = f"{samples} synthetic MNIST-shaped samples"
    sizes = [NETWORK[0], *NETWORK[1], NETWORK[2]]
    flops_per_epoch = training_flops(sizes) * len(y)
    out = {
        "network": "-".join(map(str, sizes)),
        "samples": int(len(y)),
        "data": source,
        "flops_per_epoch": flops_per_epoch,
        "results": [],
        "devices": [],
        "unavailable": {},
    }
    for name in devices:
        if name == "gpu" and not gpu_probe().ok:
            probe = gpu_probe()
            out["unavailable"]["gpu"] = f"{probe.reason}; {probe.fix}"
            continue
        backend = get_backend(name)
        rate = matmul_rate(backend)
        out["devices"].append(
            {"backend": backend.name, "device": backend.device, "matmul_gflops": rate}
        )
        log(f"{backend.name} on {backend.device}: large float32 matmul {rate:.1f} GFLOP/s")
        for bs in batch_sizes:
            r = time_training(backend, X, y, bs, repeats)
            gflops = flops_per_epoch / r["epoch_seconds"] / 1e9
            row = {
                "backend": backend.name,
                "device": backend.device,
                "batch_size": bs,
                "epoch_seconds": r["epoch_seconds"],
                "samples_per_second": len(y) / r["epoch_seconds"],
                "gflops": gflops,
                "fraction_of_matmul": gflops / rate,
                **{k: v for k, v in r.items() if k.endswith("bytes")},
            }
            out["results"].append(row)
            log(f"  batch {bs:>5d}: {r['epoch_seconds']:.3f} s/epoch")
        if augment_cost:
            r = time_training(backend, X, y, 128, repeats, augment="affine")
            swept = {
                row["batch_size"]: row["epoch_seconds"]
                for row in out["results"]
                if row["backend"] == backend.name
            }
            base = swept.get(128) or time_training(backend, X, y, 128, repeats)["epoch_seconds"]
            out.setdefault("augment_cost", []).append(
                {
                    "backend": backend.name,
                    "batch_size": 128,
                    "augment": "affine",
                    "epoch_seconds": r["epoch_seconds"],
                    "plain_epoch_seconds": base,
                }
            )
    out["speedup"], out["crossover_batch_size"] = _speedups(out["results"])
    return out


def _speedups(rows: list[dict]):
    cpu = {r["batch_size"]: r["epoch_seconds"] for r in rows if r["backend"] == "numpy"}
    gpu = {r["batch_size"]: r["epoch_seconds"] for r in rows if r["backend"] == "cupy"}
    speedup = {str(bs): cpu[bs] / gpu[bs] for bs in sorted(cpu) if bs in gpu}
    crossover = next((int(bs) for bs, s in speedup.items() if s > 1.0), None)
    return speedup, crossover


def _megabytes(value) -> str:
    """A 9-character memory column; ``-`` where the OS gave no reading."""
    return f"{value / 2**20:7.0f}MB" if value is not None else f"{'-':>9s}"


def format_table(result: dict) -> str:
    """The human-readable table ``mlp-xp bench`` prints."""
    lines = [
        f"{result['network']}, float32, SGD momentum 0.9, {result['data']}; median of "
        "timed epochs after a warm-up",
        "",
        f"{'device':8s} {'batch':>6s} {'s/epoch':>9s} {'samples/s':>11s} "
        f"{'GFLOP/s':>8s} {'of matmul':>9s} {'host RSS':>9s} {'GPU pool':>9s}",
    ]
    for r in result["results"]:
        gpu = (
            f"{r['gpu_pool_total_bytes'] / 2**20:7.0f}MB"
            if "gpu_pool_total_bytes" in r
            else f"{'-':>9s}"
        )
        lines.append(
            f"{r['backend']:8s} {r['batch_size']:>6d} {r['epoch_seconds']:9.3f} "
            f"{r['samples_per_second']:11,.0f} {r['gflops']:8.1f} "
            f"{100 * r['fraction_of_matmul']:8.0f}% "
            f"{_megabytes(r.get('host_peak_rss_bytes'))} {gpu}"
        )
    for d in result["devices"]:
        lines.append(
            f"matmul rate {d['backend']}: {d['matmul_gflops']:.1f} GFLOP/s ({d['device']})"
        )
    for a in result.get("augment_cost", []):
        extra = a["epoch_seconds"] - a["plain_epoch_seconds"]
        lines.append(
            f"affine augmentation on {a['backend']}, batch 128: "
            f"{a['epoch_seconds']:.3f} s/epoch ({extra:+.3f} s, "
            f"{100 * extra / a['plain_epoch_seconds']:+.0f}% over plain training)"
        )
    for dev, reason in result["unavailable"].items():
        lines.append(f"{dev}: not available: {reason}")
    if result["speedup"]:
        lines.append(
            "GPU/CPU speedup: "
            + ", ".join(f"batch {bs}: {s:.1f}x" for bs, s in result["speedup"].items())
        )
        cross = result["crossover_batch_size"]
        lines.append(
            "the GPU is faster at every batch size measured"
            if cross == min(int(b) for b in result["speedup"])
            else f"crossover: the CPU wins below batch {cross}"
            if cross
            else "the CPU was faster at every batch size measured"
        )
    return "\n".join(lines)
