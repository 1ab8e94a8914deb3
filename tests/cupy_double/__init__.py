"""A counting CuPy test double: NumPy underneath, CuPy 14's behaviour on top.

Tests put it in place of ``cupy`` (``with installed():``), so the package's CuPy code path
runs here, without a GPU, while the double counts what a real GPU would be asked to do:
kernel launches, blocking syncs and host-to-device copies (:class:`Counts`). It refuses what
CuPy refuses (implicit conversion to NumPy, host arrays in device operations, arrays of one
device used on another), synchronises where CuPy does (boolean masks, scalars read back),
records instead of running while a stream captures a CUDA graph (and refuses to replay a
graph whose blocks went back to the pool), keeps each device's memory and pool apart,
types a fused kernel's Python scalars as CuPy's fusion does, and can imitate a broken
workstation (``faults``: ``driver``, ``no-device``, ``cublas``, ``nvrtc``). Each rule
names, in a comment, the CuPy 14 source it comes from.
``array_api_compat.cupy`` imports on top of it.

It lives in ``tests/`` only; the package never imports it.
"""

from __future__ import annotations

import contextlib
import sys

from ._state import STATE, Counts

__all__ = ["installed", "counting", "Counts", "STATE"]

_NAMES = ("cupy", "cupy_backends", "array_api_compat.cupy")


def _ours(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in _NAMES)


def _forget_gpu_state() -> None:
    """Drop what mlp_xp cached about the GPU (the probe, fast-step verdicts)."""
    from mlp_xp.backends import gpu_probe

    gpu_probe.cache_clear()
    check = sys.modules.get("mlp_xp.gpu.check")
    if check is not None:
        check.VERDICTS.clear()


@contextlib.contextmanager
def installed(devices: int = 2, faults=()):
    """Make ``import cupy`` give the double (with ``devices`` simulated GPUs) inside the block."""
    from . import cuda
    from . import cupy as module

    saved = {k: v for k, v in sys.modules.items() if _ours(k)}
    for k in saved:
        del sys.modules[k]
    STATE.reset(devices)
    module._set_routine_accelerators(["cub"])  # CuPy's default on CUDA (CUPY_ACCELERATORS)
    STATE.faults = set(faults)
    sys.modules.update(
        {
            "cupy": module,
            "cupy.cuda": cuda,
            "cupy.linalg": module.linalg,
            "cupy.fft": module.fft,
            "cupy._core": module._core,
            **{f"cupy.cuda.{name}": sub for name, sub in cuda.SUBMODULES.items()},
        }
    )
    module.cuda = cuda
    _forget_gpu_state()
    try:
        yield module
    finally:
        for k in [k for k in sys.modules if _ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
        _forget_gpu_state()


@contextlib.contextmanager
def counting():
    """``with counting() as c: ...`` then ``c.counts`` holds what the block did."""

    class Window:
        counts = Counts()

    start = STATE.counts.copy()
    window = Window()
    try:
        yield window
    finally:
        window.counts = STATE.counts.copy() - start
