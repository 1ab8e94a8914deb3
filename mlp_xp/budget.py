"""Memory budgets: what a network and its training will take, judged before it is allocated.

A network's size follows from its description alone (``n_inputs``, ``hidden`` with its
maxout pieces, ``n_outputs``, ``dtype``); a training run's from its recipe too (the
optimizer's state slots, the weights' moving average, the batch, the data). So
:func:`estimate` computes, with Python integers (no overflow, nothing allocated), the bytes
each part will take, and :func:`check` compares the total with the memory the device has
free -- ``MemAvailable`` of the host (or what is left under an address-space limit), or
CUDA's ``memGetInfo`` of the model's own GPU -- and refuses in one line that names the
estimate, the memory and which setting to change: the hidden sizes when the parameters
are the problem, the batch size when the activations are, ``stream`` when the data is.

The parts (``s`` the dtype's bytes, ``P`` the parameter count, ``B`` the rows a step or an
evaluation pass holds at once):

=====================  ====================================================================
parameters             ``P s``: one flat buffer (:mod:`mlp_xp.flat`)
initial weights        ``P s + 8 w``: the host arrays drawn before the one copy to the
                       device, ``w`` the largest layer (drawn in float64 first)
gradients              ``P s``
optimizer state        ``P s`` per slot: 0 for ``sgd``, 1 for ``momentum``, 2 for ``adam``
weight average         ``P s`` with ``ema``; one more with ``patience`` (the best epoch)
step temporaries       ``3 P s``, 2 more with ``ema``, 2 more for ``adam``: the whole-buffer
                       temporaries of an update, the L2 term and the average, as measured
                       (peak RSS of a 784-6000-6000-10 run: 1.42 GB with ``ema``, 0.95 GB
                       without; ``tests/test_budget.py`` traces smaller ones)
activations            ``B s (n_inputs + 3 sum(widths) + 3 n_outputs)`` (+ ``8 B units``
                       for a maxout layer's winners): inputs, pre-activations, outputs and
                       deltas of one batch
data                   the training inputs on the device (uint8 pixels or floats), targets
=====================  ====================================================================

The parameters, gradients and optimizer state are exact (``tests/test_budget.py`` compares
them with the ``nbytes`` of a real network and optimizer); the activations are an upper
bound of what one step keeps alive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import MemoryBudgetError
from .layers import LayerSpec, parse_hidden

__all__ = [
    "check_data_on_device",
    "Estimate",
    "estimate",
    "for_training",
    "check",
    "available_bytes",
    "host_available",
    "size",
    "API_NAMES",
    "CLI_FLAGS",
    "EVAL_ROWS",
]

#: Rows an evaluation pass holds at once (:meth:`mlp_xp.MLP.evaluate`'s batch).
EVAL_ROWS = 4096

_ITEMSIZE = {"float32": 4, "float64": 8}
_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
_BUILD = ("parameters", "initial weights")

#: How a refusal names each setting: from Python (keyword names) or from the command line.
API_NAMES = {"hidden": "hidden", "batch_size": "batch_size", "optimizer": "optimizer",
             "ema": "ema", "data": "the training set", "stream": None}  # fmt: skip
CLI_FLAGS = {"hidden": "--hidden", "batch_size": "--batch-size", "optimizer": "--optimizer",
             "ema": "--ema", "data": "--data", "stream": "--stream"}  # fmt: skip


def size(n: float) -> str:
    """Bytes as a person reads them: ``3.7 GB``, ``812.0 MB``, ``3.1e+11 GB``."""
    if n >= 1e15:
        return f"{n / 1e9:.2g} GB"
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


@dataclass(frozen=True)
class Estimate:
    """Bytes each part of a network (and its training) takes; :attr:`total` is their sum."""

    n_params: int
    parts: dict[str, int] = field(default_factory=dict)
    hidden: tuple[LayerSpec, ...] = ()
    largest: str = ""  # the weight matrix that dominates, e.g. "30000x30000 (layer 2)"

    @property
    def total(self) -> int:
        """The peak: the parameters, plus the larger of the initial weights (drawn once,
        then freed) and what training adds."""
        return self.parts["parameters"] + max(self.parts["initial weights"], self.training)

    @property
    def training(self) -> int:
        """What training adds to a built network."""
        return sum(v for k, v in self.parts.items() if k not in _BUILD)

    def model_bytes(self) -> int:
        """What grows with the network's size while it trains: all but activations and data."""
        return sum(v for k, v in self.parts.items() if k not in ("activations", "data", _BUILD[1]))

    def describe(self) -> str:
        """``14.8 GB (parameters 3.7 GB, gradients 3.7 GB, ...)``: the parts of the peak,
        the big ones first."""
        init = self.parts["initial weights"]
        keys = (
            ["initial weights"]
            if init > self.training
            else [k for k in self.parts if k not in _BUILD]
        )
        parts = sorted(
            ((self.parts[k], k) for k in ["parameters", *keys] if self.parts[k]), reverse=True
        )
        return f"{size(self.total)} ({', '.join(f'{k} {size(v)}' for v, k in parts)})"


def _layers(n_inputs: int, hidden: Any, n_outputs: int) -> tuple[list[LayerSpec], list[int]]:
    """The layer specs (output layer last) and each layer's number of inputs."""
    specs = [*parse_hidden(hidden), LayerSpec(int(n_outputs))]
    fan_in = [int(n_inputs)] + [spec.units for spec in specs[:-1]]
    return specs, fan_in


def estimate(
    n_inputs: int,
    hidden: Any,
    n_outputs: int,
    *,
    dtype: str = "float32",
    optimizer: str | None = None,
    momentum: float | None = None,
    ema: float = 0.0,
    patience: int = 0,
    batch_size: int = 0,
    n_samples: int = 0,
    input_bytes: int | None = None,
) -> Estimate:
    """The bytes of a network and, with ``optimizer``, of training it (see the table above).

    ``batch_size`` is the rows one step (or one evaluation pass) holds; ``n_samples``
    training rows are counted as ``input_bytes`` each (``n_inputs`` floats by default;
    ``n_inputs`` for uint8 pixels) plus their targets. Nothing is allocated.
    """
    s = _ITEMSIZE.get(str(dtype), 8)
    specs, fan_in = _layers(n_inputs, hidden, n_outputs)
    counts = [(n_in + 1) * spec.width for n_in, spec in zip(fan_in, specs, strict=True)]
    P = sum(counts)
    i = max(range(len(counts)), key=counts.__getitem__)
    largest = f"{fan_in[i]}x{specs[i].width} weights (layer {i + 1})"
    parts = {"parameters": P * s, "initial weights": P * s + 8 * max(counts)}
    if optimizer is not None:
        slots = _SLOTS.get(optimizer, 2)
        if optimizer == "sgd" and momentum:
            slots = 1
        parts["gradients"] = P * s
        parts["optimizer state"] = slots * P * s
        parts["weight average"] = (int(bool(ema)) + int(bool(patience))) * P * s
        temporaries = 3 + 2 * int(bool(ema)) + 2 * int(optimizer == "adam")
        parts["step temporaries"] = temporaries * P * s
    widths = sum(spec.width for spec in specs)
    winners = sum(spec.units for spec in specs if spec.is_maxout)
    rows = int(batch_size)
    parts["activations"] = rows * (
        s * (int(n_inputs) + 3 * widths + 3 * int(n_outputs)) + 8 * winners
    )
    per_row = int(n_inputs) * s if input_bytes is None else int(input_bytes)
    parts["data"] = int(n_samples) * (per_row + int(n_outputs) * s)
    return Estimate(P, parts, tuple(specs[:-1]), largest)


def for_training(
    model: Any, config: Any, n_samples: int = 0, *, input_bytes: int | None = None,
    evaluates: bool = False,
) -> Estimate:  # fmt: skip
    """:func:`estimate` of training ``model`` (an :class:`~mlp_xp.MLP`, or anything with its
    ``n_inputs``, ``hidden``, ``n_outputs`` and ``dtype``) with ``config`` (a
    :class:`~mlp_xp.TrainConfig`) on ``n_samples`` rows; ``evaluates``: held-out passes of
    :data:`EVAL_ROWS` rows too."""
    batch = min(config.batch_size, n_samples) if n_samples else config.batch_size
    return estimate(
        model.n_inputs, model.hidden, model.n_outputs, dtype=model.dtype,
        optimizer=config.optimizer, momentum=config.momentum, ema=config.ema,
        patience=config.patience, batch_size=max(batch, EVAL_ROWS if evaluates else 0),
        n_samples=n_samples, input_bytes=input_bytes,
    )  # fmt: skip


def check_data_on_device(model: Any, config: Any, X: Any, X_val: Any = None, *,
                         pixels: bool = False) -> None:  # fmt: skip
    """:func:`check` of training ``model`` with ``config`` on ``X`` (and the held-out
    ``X_val``) as they will sit on its device: the network, its state, a batch, and the
    data (uint8 ``pixels`` a byte each, else the model's float)."""
    itemsize = 1 if pixels else np.dtype(model.dtype).itemsize
    rows = len(X) + (len(X_val) if X_val is not None else 0)
    estimate = for_training(
        model, config, rows, input_bytes=model.n_inputs * itemsize, evaluates=X_val is not None
    )
    check(estimate, model.backend, built=True)


def available_bytes(backend: Any) -> tuple[int | None, str]:
    """Memory free for ``backend``'s device, and what limits it (``None`` when unknown).

    A GPU: the backend's :meth:`~mlp_xp.backends.Backend.free_device_bytes` (CuPy: CUDA's
    free memory of its own GPU, read inside its scope, not GPU 0's, plus what its memory
    pool holds unused; PyTorch on CUDA: ``torch.cuda.mem_get_info``).
    The host: the smaller of ``MemAvailable`` (``/proc/meminfo``; elsewhere the physical
    pages the OS reports free) and what is left under this process's address-space limit.
    """
    free = backend.free_device_bytes()
    if free is not None:
        return int(free), f"free on {backend.device}"
    return host_available()


def host_available() -> tuple[int | None, str]:
    """Host memory this process may still take, and what limits it."""
    limits: list[tuple[int, str]] = []
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append((soft - used, "left under this process's address-space limit"))
    except (ImportError, OSError, ValueError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    limits.append((int(line.split()[1]) * 1024, "of host memory available"))
    except OSError:
        try:  # macOS and other POSIX systems without /proc
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            limits.append((int(free), "of host memory free"))
        except (AttributeError, OSError, ValueError):
            pass
    return min(limits) if limits else (None, "")


def _advice(est: Estimate, names: dict, room: int) -> str:
    """Which setting to change: the part that cannot fit decides."""
    model, act, data = est.model_bytes(), est.parts.get("activations", 0), est.parts.get("data", 0)
    if model >= max(act, data) or model > room:
        hidden = ",".join(str(h) for h in est.hidden) or "none"
        extra = ""
        if est.parts.get("optimizer state") or est.parts.get("weight average"):
            extra = f" (or drop state: {names['optimizer']} sgd, {names['ema']} 0)"
        return (
            f"the {est.n_params:,} parameters are the problem (the {est.largest}); "
            f"use smaller {names['hidden']} than {hidden}{extra}"
        )
    if act >= data:
        return f"the activations of one batch are the problem; use a smaller {names['batch_size']}"
    stream = f", or {names['stream']} to read it a batch at a time" if names["stream"] else ""
    return f"the data is the problem; use a smaller {names['data']}{stream}"


def check(est: Estimate, backend: Any, names: dict | None = None, built: bool = False) -> None:
    """Refuse, with a :class:`~mlp_xp.errors.MemoryBudgetError`, what cannot fit.

    With ``built`` the network exists already: only what training adds is asked for.
    ``names`` spells the settings (:data:`API_NAMES` or :data:`CLI_FLAGS`).
    """
    names = names or API_NAMES
    gpu = getattr(backend, "kind", "cpu") == "gpu"
    # a GPU's network is drawn on the host and copied over once: its initial weights are
    # the host's concern (below), not the device's
    device = replace(est, parts={**est.parts, "initial weights": 0}) if gpu else est
    need = device.training if built else device.total
    room, what = available_bytes(backend)
    if room is not None and need > room:
        raise MemoryBudgetError(
            f"{est.n_params:,} parameters would need {device.describe()}, but "
            f"{size(max(room, 0))} is {what}; {_advice(device, names, room)}"
        )
    if not built and gpu:
        host = est.parts["parameters"] + est.parts["initial weights"]
        room, what = host_available()
        if room is not None and host > room:
            raise MemoryBudgetError(
                f"the {est.n_params:,} initial weights are drawn on the host, which needs "
                f"{size(host)}, but {size(max(room, 0))} is {what}; "
                f"use smaller {names['hidden']}"
            )
