"""Where a training step's time goes, per device and batch size (``bench --to-accuracy``).

A separate measuring pass, so normal training is never slowed: the generic step's
phases are called one by one on a trainer's state, with the device synchronised
around each (:class:`PhaseTimer`), for a few steps of the recipe:

``gather``        the batch's rows gathered and scaled (uint8 pixels to floats)
``augmentation``  the batch's distortion
``forward/backward``  :meth:`~mlp_xp.model.MLP.loss_and_grads`; split into
``matmuls``       the step's matrix products alone, timed on the same shapes, and
``elementwise``   the rest of forward/backward (bias, activations, their derivatives,
                  softmax, the reductions, the L2 term): forward/backward minus matmuls
``optimizer``     the update
``step``          a whole step of the step the trainer chooses (on a GPU, the fast step)

Each figure is the least time over the steps timed: on a shared machine the median
holds other work's bursts, the least is what the phase costs when left alone.

On a GPU each phase is also timed by CUDA events: the device's time beside the host's
time to issue the work (``cupyx.profiler.benchmark`` separates them the same way). A
step whose host time reaches its device time keeps the device waiting for launches.

The verdict of a row: **launches** where the device waits on the host; else
**compute** where the matmuls take most of the step; else **memory** where the rest
runs at half or more of the device's measured copy bandwidth, and **overhead** (per
operation: launches, or the interpreter on a CPU) where it runs slower than that.
Traffic and FLOPs are counted by :func:`step_work` (a stated lower bound on traffic).
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np

from ..backends import Backend

__all__ = ["PhaseTimer", "step_work", "copy_rate", "step_parts", "verdict"]

_MEMORY_PHASES = ("gather", "augmentation", "elementwise", "optimizer")


def _events(backend: Backend):
    """``(make_recorded_event, seconds_between)`` on a CUDA device, else ``None``."""
    if backend.kind != "gpu":
        return None
    cupy = getattr(backend, "cupy", None)
    if cupy is not None and hasattr(cupy.cuda, "get_elapsed_time"):

        def record():
            event = cupy.cuda.Event()
            event.record()
            return event

        return record, lambda a, b: cupy.cuda.get_elapsed_time(a, b) / 1e3
    # a torch backend: torch is imported by then (only its backend module imports it)
    torch = sys.modules.get("torch") if backend.name.startswith("torch") else None
    if torch is not None and torch.cuda.is_available():

        def record_torch():
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event

        return record_torch, lambda a, b: a.elapsed_time(b) / 1e3
    return None


class PhaseTimer:
    """Host time to issue each phase, wall time until it is done, and (on a GPU) the
    device's time by events; medians per phase."""

    def __init__(self, backend: Backend):
        self.backend, self.events = backend, _events(backend)
        self.issue: dict[str, list[float]] = defaultdict(list)
        self.wall: dict[str, list[float]] = defaultdict(list)
        self.device: dict[str, list[float]] = defaultdict(list)

    def time(self, name: str, fn):
        self.backend.synchronize()
        start = self.events[0]() if self.events else None
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        end = self.events[0]() if self.events else None
        self.backend.synchronize()
        self.wall[name].append(time.perf_counter() - t0)
        self.issue[name].append(t1 - t0)
        if self.events:
            self.device[name].append(self.events[1](start, end))
        return out

    def medians(self, which: str = "wall") -> dict[str, float]:
        return {k: statistics.median(v) for k, v in getattr(self, which).items()}

    def least(self, which: str = "wall") -> dict[str, float]:
        return {k: min(v) for k, v in getattr(self, which).items()}


def _products(sizes: list[int], batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of a step's matrix products: forward, dE/dW, and dE/dx above layer 1."""
    pairs = list(itertools.pairwise(sizes))
    fwd = [(batch, a, b) for a, b in pairs]
    grad_w = [(a, batch, b) for a, b in pairs]
    grad_x = [(batch, b, a) for a, b in pairs[1:]]
    return fwd + grad_w + grad_x


def step_work(sizes: list[int], batch: int) -> dict[str, dict[str, float]]:
    """FLOPs and bytes (float32) per step of each part, the traffic a lower bound.

    matmuls: ``2 m k n`` FLOPs, the operands read and the product written once.
    elementwise: per activation element 4 operations (bias, activation, its derivative,
    the bias gradient's sum) and 6 touches (read or write); L2 reads the weights and the
    gradient and writes the gradient (2 FLOPs, 3 touches a weight). optimizer (momentum
    SGD): 3 FLOPs, 5 touches a parameter. augmentation: 4 neighbours read and one value
    written a pixel, 8 FLOPs (bilinear weights). gather: one read and one write a pixel.
    """
    mm = _products(sizes, batch)
    weights = sum(a * b for a, b in itertools.pairwise(sizes))
    params = weights + sum(sizes[1:])
    acts = batch * sum(sizes[1:])
    pixels = batch * sizes[0]
    return {
        "matmuls": {"flops": sum(2 * m * k * n for m, k, n in mm),
                    "bytes": 4 * sum(m * k + k * n + m * n for m, k, n in mm)},
        "elementwise": {"flops": 4 * acts + 2 * weights, "bytes": 4 * (6 * acts + 3 * weights)},
        "optimizer": {"flops": 3 * params, "bytes": 4 * 5 * params},
        "augmentation": {"flops": 8 * pixels, "bytes": 4 * 5 * pixels},
        "gather": {"flops": pixels, "bytes": 5 * pixels},  # uint8 read, float32 written
    }  # fmt: skip


def copy_rate(backend: Backend, n: int | None = None, repeats: int = 5) -> float:
    """Median GB/s of ``a += b`` over float32 arrays (two reads, one write) on ``backend``."""
    if n is None:
        n = 1 << (26 if backend.kind == "gpu" else 24)
        n = 1 << 16 if backend.op_counts() is not None else n
    a, b = backend.put([np.ones(n, np.float32), np.ones(n, np.float32)])
    timer = PhaseTimer(backend)
    with backend.scope():
        for _ in range(repeats + 1):  # the first is a warm-up
            timer.time("copy", lambda: a.__iadd__(b))
    return 12 * n / statistics.median(timer.wall["copy"][1:]) / 1e9


def _matmuls(backend: Backend, sizes: list[int], batch: int):
    """A call running the step's products alone, on random operands of the same shapes,
    into buffers kept (as the step's gradients are) where the backend writes ``out=``."""
    rng = np.random.default_rng(0)
    xp, shapes = backend.xp, _products(sizes, batch)
    with backend.scope():
        operands = [
            backend.put([rng.standard_normal(s, dtype=np.float32) for s in ((m, k), (k, n))])
            for m, k, n in shapes
        ]
        if not backend.writes_out:
            return lambda: [xp.matmul(a, b) for a, b in operands]
        outs = [xp.empty((m, n), dtype=xp.float32) for m, _, n in shapes]
    return lambda: [xp.matmul(a, b, out=o) for (a, b), o in zip(operands, outs, strict=True)]


def _one_step(trainer, plain, coefficients, timer: PhaseTimer, plan, s: int) -> None:
    """Step ``s`` of ``plan``, phase by phase (the generic step's own calls)."""
    model, state, rows = trainer.model, trainer.train_state, plan.rows(s)
    xb, tb, masks = timer.time("gather", lambda: plain.batch(model, s))
    if trainer.augmenter is not None:
        xb = timer.time(
            "augmentation",
            lambda: trainer.augmenter(xb, coefficients[rows, ...], trainer.backend),
        )
    _, grads = timer.time(
        "forward/backward",
        lambda: model.loss_and_grads(xb, tb, masks, with_penalty=False, out=plain.grads),
    )
    timer.time("optimizer", lambda: plain.update(state, plan, s, grads))


def step_parts(trainer, steps: int = 10, warmup: int = 2) -> dict:
    """Time ``steps`` steps of ``trainer``'s recipe (after ``warmup``): each phase of the
    generic step, the products alone, and a whole step of the step the trainer would
    choose (on a GPU, the fast step), in turn, so all share the same moments of a busy
    machine. The trainer's state moves on (use a trainer made for this)."""
    from ..train.step import GenericStep

    backend, model, state = trainer.backend, trainer.model, trainer.train_state
    plain = GenericStep(state, dataclasses.replace(trainer.data, augmenter=None))
    plan = trainer.plan(0)
    plain.begin_epoch(state, plan)
    runner = trainer.choose_step(plan)  # what Trainer.run_epoch does first
    runner.begin_epoch(state, plan, 0)
    coefficients = None
    if trainer.augmenter is not None:
        coefficients = backend.put(plan.coefficients, model.dtype)
    timer = PhaseTimer(backend)
    sizes = list(model.layer_sizes)
    matmuls = _matmuls(backend, sizes, trainer.batch_size)
    full = len(plan.order) // plan.batch_size  # full batches only (at least one: the
    n = min(steps + warmup, full)  # trainer makes a batch larger than the set the whole set)
    warmup = min(warmup, n - 1)  # at least one step timed, however few the batches
    with backend.scope(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for s in range(n):
            if s == warmup:
                timer = PhaseTimer(backend)
            _one_step(trainer, plain, coefficients, timer, plan, s)
            timer.time("matmuls", matmuls)
            timer.time("step", lambda s=s: runner(state, plan, s))
            state.advance(plan, s)
    runner.end_epoch()
    return _parts(timer, runner.name, sizes, trainer.batch_size)


def _parts(timer: PhaseTimer, step_name: str, sizes: list[int], batch: int) -> dict:
    """The least time of each phase over the steps (what it costs when nothing else on
    the machine interrupts it: on a shared machine a median holds other work's bursts);
    elementwise is forward/backward minus the products, 0 where noise makes it negative."""
    least = timer.least()
    difference = least.pop("forward/backward") - least["matmuls"]
    whole = least.pop("step")
    least["elementwise"] = max(difference, 0.0)
    step: dict[str, Any] = {"step": step_name, "seconds": whole,
                            "issue_seconds": timer.least("issue")["step"]}  # fmt: skip
    out: dict[str, Any] = {
        "seconds": least,
        "step_seconds": sum(least.values()),
        "elementwise_below_noise": difference < 0,
        "work": step_work(sizes, batch),
        "whole_step": step,
    }
    if timer.events:
        out["device_seconds"] = timer.least("device")
        out["issue_seconds"] = timer.least("issue")
        step["device_seconds"] = out["device_seconds"].pop("step")
        out["issue_seconds"].pop("step")
    return out


def verdict(parts: dict, matmul_gflops: float, copy_gbs: float) -> dict:
    """The rates of a row's parts and what bounds its step (see the module docstring)."""
    sec, work = parts["seconds"], parts["work"]
    mm_rate = work["matmuls"]["flops"] / sec["matmuls"] / 1e9 if sec["matmuls"] else 0.0
    mem = [k for k in _MEMORY_PHASES if k in sec]
    mem_seconds = sum(sec[k] for k in mem)
    mem_rate = sum(work[k]["bytes"] for k in mem) / mem_seconds / 1e9 if mem_seconds else 0.0
    ew = sec.get("elementwise")
    out = {
        "matmul_gflops": mm_rate,
        "of_matmul_peak": mm_rate / matmul_gflops if matmul_gflops else None,
        # the elementwise part alone; None where noise left it no time
        "elementwise_gbs": work["elementwise"]["bytes"] / ew / 1e9 if ew else None,
        "rest_gbs": mem_rate,  # every part but the products: what the verdict reads
        "of_copy_bandwidth": mem_rate / copy_gbs if copy_gbs else None,
        "matmul_share": sec["matmuls"] / parts["step_seconds"],
    }
    step = parts["whole_step"]
    if "device_seconds" in step and step["issue_seconds"] >= 0.9 * step["device_seconds"]:
        bound = "launches"
    elif out["matmul_share"] >= 0.5:
        bound = "compute"
    elif out["of_copy_bandwidth"] is not None and out["of_copy_bandwidth"] >= 0.5:
        bound = "memory"
    else:
        bound = "overhead"
    return {**out, "bound": bound}
