"""Honest device-speed comparison: the same network, seed and data on each backend.

Timing rules: a warm-up epoch is excluded; the device is synchronised before
every clock read (the training loop does this at epoch boundaries); each
configuration is timed over several epochs and the median is reported. The
large-matmul rate of the same device is measured in the same run, so achieved
GFLOP/s can be read as a fraction of what the hardware does on this process. The
cost of augmentation is the difference between augmented and plain epochs timed
alternately (:func:`time_augmentation`).

Where the array module can count what a step asks of the device (the counting CuPy
double the tests use), the result also holds ``counted``: kernel launches, blocking
syncs and host-to-device copies per step, for each step kind and recipe.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

import numpy as np

from ..backends import Backend, get_backend, gpu_probe
from ..model import MLP
from ..train import Callback, TrainConfig, Trainer

__all__ = [
    "training_flops",
    "matmul_rate",
    "time_training",
    "time_augmentation",
    "counted_steps",
    "run_bench",
    "format_table",
]

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
    """Median GFLOP/s of an n x n float32 matmul on ``backend`` (synchronised).

    A simulated device (one that counts its work, as in the tests) gets a small matrix.
    """
    if n is None:
        n = 8192 if backend.kind == "gpu" else 2048
        n = 256 if backend.op_counts() is not None else n
    rng = np.random.default_rng(0)
    a, b = backend.put([rng.random((n, n), dtype=np.float32) for _ in range(2)])
    times = []
    with backend.scope():
        c = a @ b
        backend.synchronize()
        for _ in range(repeats):
            t0 = time.perf_counter()
            c = a @ b
            backend.synchronize()
            times.append(time.perf_counter() - t0)
    del c
    return 2 * n**3 / statistics.median(times) / 1e9


def benchmark_trainer(
    backend: Backend,
    X,
    y,
    batch_size: int,
    epochs: int,
    augment: str = "none",
    seed: int = 0,
    **recipe,
) -> Trainer:
    """A trainer with the benchmark configuration: exactly ``mlp-xp train --optimizer sgd
    --momentum 0.9 --lr 0.05 --batch-size B --augment none --ema 0`` (784-300-100-10,
    float32, L2 1e-4; no weight average, as the peers compared with have none);
    ``recipe`` overrides other :class:`TrainConfig` fields."""
    model = MLP(*NETWORK, backend=backend, l2=1e-4, seed=seed)
    settings: dict[str, Any] = dict(optimizer="sgd", momentum=0.9, lr=0.05, ema=0.0)
    settings.update(recipe)
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, augment=augment, seed=seed, **settings
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
    trainer = benchmark_trainer(backend, X, y, batch_size, 1 + repeats, augment, seed)
    history = trainer.run()
    seconds = statistics.median(history.seconds[1:])  # epoch 1 is the warm-up
    return {
        "epoch_seconds": seconds,
        "all_epoch_seconds": history.seconds,
        "step": trainer.runner.name,
        **backend.memory_info(),
    }


def time_augmentation(
    backend: Backend,
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int = 128,
    repeats: int = 3,
    augment: str = "affine",
    seed: int = 0,
) -> dict:
    """Median seconds per epoch of the benchmark configuration with and without ``augment``.

    The two trainers' epochs alternate (plain, augmented, plain, ...), the first of each
    a warm-up, so both medians come from the same stretch of time: on a shared machine
    another job's burst lands on both, where timing one after the other can put it on
    either and turn the difference into noise.
    """
    trainers = [
        benchmark_trainer(backend, X, y, batch_size, 1 + repeats, kind, seed)
        for kind in ("none", augment)
    ]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(1 + repeats):
            for trainer in trainers:
                trainer.run_epoch()
    plain, distorted = (t.history.seconds[1:] for t in trainers)
    return {
        "backend": backend.name,
        "batch_size": batch_size,
        "augment": augment,
        "epoch_seconds": statistics.median(distorted),
        "plain_epoch_seconds": statistics.median(plain),
        "all_epoch_seconds": distorted,
        "all_plain_epoch_seconds": plain,
        "inputs_ahead": getattr(trainers[1].runner, "lookahead", None) is not None,
    }


#: The recipes whose steps are counted: the default recipe's augmentation, elastic
#: distortions, dropout, Adam, and no augmentation.
COUNTED_RECIPES: dict[str, dict[str, Any]] = {
    "affine": dict(augment="affine"),
    "elastic": dict(augment="elastic"),
    "dropout": dict(augment="affine", dropout=0.2),
    "adam": dict(augment="affine", optimizer="adam", momentum=None, lr=1e-3),
    "none": dict(augment="none"),
}


class _StepCounts(Callback):
    """What each step of an epoch asked of the device (from ``backend.op_counts()``)."""

    def __init__(self, backend):
        self.backend, self.rows, self.last = backend, [], None

    def on_epoch_start(self, trainer, epoch, n_steps):
        self.rows, self.last = [], self.backend.op_counts()

    def on_step(self, trainer, step):
        now = self.backend.op_counts()
        self.rows.append({k: now[k] - self.last[k] for k in now})
        self.last = now


def counted_steps(backend: Backend, X, y, batch_size: int = 128) -> list[dict] | None:
    """Per-step launches, syncs and copies of each step kind and recipe, where countable.

    A step's figure is the most any full step of the second epoch asked for (the first
    step of an epoch also carries the epoch's plan upload, reported apart).
    """
    if backend.op_counts() is None:
        return None
    rows = []
    for kind in ("generic", "fast") if backend.kind == "gpu" else ("generic",):
        for name, recipe in COUNTED_RECIPES.items():
            recipe = {**recipe, "gpu_step": kind}
            if backend.kind != "gpu":
                recipe.pop("gpu_step")
            trainer = benchmark_trainer(backend, X, y, batch_size, 2, **recipe)
            counts = _StepCounts(backend)
            trainer.callbacks.append(counts)
            trainer.run()
            steady = counts.rows[1 : len(X) // batch_size]
            per_step = {k: max(r[k] for r in steady) for k in steady[0]}
            rows.append(
                {"step": trainer.runner.name, "recipe": name, "per_step": per_step,
                 "first_step": counts.rows[0], "batch_size": batch_size}
            )  # fmt: skip
    return rows


def run_bench(
    devices=None,
    batch_sizes=(32, 128, 512, 2048),
    samples: int = 60000,
    repeats: int = 3,
    data: str | None = None,
    augment_cost: bool = True,
    log=print,
) -> dict:
    """Time each device on every batch size; see :func:`format_table`.

    ``devices`` names backends (``cpu``, ``gpu``, ``gpu:N``); a GPU named that cannot be
    used raises :class:`~mlp_xp.errors.DeviceError`. By default: the CPU, and GPU 0 when
    it passes the probe (otherwise the reason is recorded under ``unavailable``).
    """
    X, y, source = _bench_data(data, samples)
    sizes = [NETWORK[0], *NETWORK[1], NETWORK[2]]
    flops_per_epoch = training_flops(sizes) * len(y)
    out: dict[str, Any] = {
        "network": "-".join(map(str, sizes)),
        "samples": int(len(y)),
        "data": source,
        "flops_per_epoch": flops_per_epoch,
        "results": [],
        "devices": [],
        "unavailable": {},
    }
    if devices is None:
        devices = ["cpu"]
        probe = gpu_probe(0)
        if probe.ok:
            devices.append("gpu")
        else:
            out["unavailable"]["gpu"] = f"{probe.reason}; {probe.fix}"
    for name in devices:
        _bench_device(out, get_backend(name), X, y, batch_sizes, repeats, augment_cost, log)
    out["speedup"], out["crossover_batch_size"] = _speedups(out["results"])
    return out


def _bench_data(data: str | None, samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The inputs timed: a data set's digits, or synthetic MNIST-shaped samples."""
    if data:
        from ..data import load_digits, scale_images

        digits = load_digits(data, image_shape=(28, 28))
        return scale_images(digits.images), digits.labels, f"{data} ({len(digits)} digits)"
    rng = np.random.default_rng(0)
    X = rng.random((samples, 784), dtype=np.float32)
    return X, rng.integers(0, 10, samples), f"{samples} synthetic MNIST-shaped samples"


def _bench_device(out: dict, backend, X, y, batch_sizes, repeats, augment_cost, log) -> None:
    """One device's rows: each batch size's epoch, the augmentation cost, the counted step."""
    rate = matmul_rate(backend)
    out["devices"].append({"backend": backend.name, "device": backend.device,
                           "matmul_gflops": rate})  # fmt: skip
    log(f"{backend.name} on {backend.device}: large float32 matmul {rate:.1f} GFLOP/s")
    for bs in batch_sizes:
        r = time_training(backend, X, y, bs, repeats)
        gflops = out["flops_per_epoch"] / r["epoch_seconds"] / 1e9
        out["results"].append(
            {
                "backend": backend.name,
                "device": backend.device,
                "step": r["step"],
                "batch_size": bs,
                "epoch_seconds": r["epoch_seconds"],
                "samples_per_second": len(y) / r["epoch_seconds"],
                "gflops": gflops,
                "fraction_of_matmul": gflops / rate,
                **{k: v for k, v in r.items() if k.endswith("bytes")},
            }
        )
        log(f"  batch {bs:>5d}: {r['epoch_seconds']:.3f} s/epoch")
    if augment_cost:
        out.setdefault("augment_cost", []).append(time_augmentation(backend, X, y, 128, repeats))
    counted = counted_steps(backend, X[:512], y[:512])
    if counted is not None:
        out.setdefault("counted", []).extend(dict(r, backend=backend.name) for r in counted)


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
        ahead = "; inputs made a step ahead on a spare core" if a.get("inputs_ahead") else ""
        lines.append(
            f"{a['augment']} augmentation on {a['backend']}, batch {a['batch_size']}: "
            f"{a['epoch_seconds']:.3f} s/epoch ({extra:+.3f} s, "
            f"{100 * extra / a['plain_epoch_seconds']:+.0f}% over plain training, "
            f"epochs alternated{ahead})"
        )
    for c in result.get("counted", []):
        n = c["per_step"]
        lines.append(
            f"counted per step on {c['backend']}, {c['step']} step, {c['recipe']}: "
            f"{n['launches']} launches ({n['graph_launches']} graph), {n['syncs']} syncs, "
            f"{n['h2d']} host-to-device copies"
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
