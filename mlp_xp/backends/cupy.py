"""The CuPy backend: one CUDA GPU. The only module that imports CuPy, lazily, the first
time a GPU is asked for or probed: ``import mlp_xp`` never loads CuPy."""

from __future__ import annotations

import contextlib
import functools
import importlib
from typing import Any

import numpy as np

from ..arrays import Location
from ..devices import INSTALL_FIX, GpuProbe, cupy_namespace, diagnose, probe_gpu
from ..errors import DeviceError, first_line
from ._base import Backend

__all__ = ["CupyBackend", "gpu_probe", "gpu_count", "make_current", "device_error_for", "GpuProbe"]


@functools.cache
def gpu_probe(index: int = 0) -> GpuProbe:
    """Probe GPU ``index`` once per process (a cuBLAS matmul and an NVRTC-compiled kernel)."""
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken CUDA library at import
        if isinstance(exc, ModuleNotFoundError) and exc.name == "cupy":
            return GpuProbe(False, "CuPy is not installed", INSTALL_FIX, index=index)
        reason, fix = diagnose(exc) or (f"CuPy failed to import ({first_line(exc)})", INSTALL_FIX)
        return GpuProbe(False, reason, fix, index=index)
    return probe_gpu(cupy, index)


class CupyBackend(Backend):
    """One CUDA GPU (``index``) through CuPy; its work runs with that GPU current."""

    name = "cupy"
    kind = "gpu"
    writes_out = True

    def __init__(self, probe: GpuProbe):
        self.cupy = importlib.import_module("cupy")
        self.index = probe.index
        self._device = self.cupy.cuda.Device(self.index)
        super().__init__(
            cupy_namespace(self.cupy),
            f"gpu:{self.index} ({probe.device_name}, CuPy {probe.cupy_version})",
        )

    @property
    def key(self) -> tuple:
        return (self.name, self.index)

    @property
    def spec(self) -> str:
        return f"gpu:{self.index}"

    def __str__(self) -> str:
        return f"cupy (gpu:{self.index})"

    def scope(self) -> contextlib.AbstractContextManager:
        return self._device

    def _put(self, a: Any, dtype: Any) -> Any:
        with self._device:
            return super()._put(a, dtype)

    def _take(self, x: Any, where: Location) -> Any:
        if where.kind != "gpu" or where.index != self.index:
            return None
        with self._device:  # the producer's memory, read on CuPy's current stream
            return self.cupy.from_dlpack(x)

    def _get(self, a: Any) -> np.ndarray:
        if not isinstance(a, self.cupy.ndarray):
            return np.asarray(a)
        with a.device:
            return self.cupy.asnumpy(a)

    def synchronize(self) -> None:
        with self._device:
            self.cupy.cuda.get_current_stream().synchronize()

    def memory_info(self) -> dict:
        info = super().memory_info()
        pool = self.cupy.get_default_memory_pool()
        info.update(
            gpu_pool_used_bytes=int(pool.used_bytes()), gpu_pool_total_bytes=int(pool.total_bytes())
        )
        return info

    def free_device_bytes(self) -> int | None:
        """CUDA's free memory of this backend's GPU (not GPU 0's), plus what CuPy's pool
        holds unused (freed arrays it keeps for reuse)."""
        with self.scope():
            free, _ = self.cupy.cuda.runtime.memGetInfo()
            pool = self.cupy.get_default_memory_pool()
            free += int(pool.total_bytes()) - int(pool.used_bytes())
        return int(free)

    def owns(self, x: Any) -> bool:
        return isinstance(x, self.cupy.ndarray) and x.device.id == self.index

    def op_counts(self) -> dict | None:
        if not getattr(self.cupy, "__counting_double__", False):
            return None
        return self.cupy.counts().as_dict()


def gpu_count() -> int:
    """How many GPUs this process sees, 0 without a usable CuPy; creates no CUDA context
    (``cudaGetDeviceCount``), so a data-parallel rank can count before it chooses."""
    try:
        cupy = importlib.import_module("cupy")
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no CuPy, no driver: the probe says why when a GPU is asked for
        return 0


def make_current(index: int) -> None:
    """Make GPU ``index`` this process's current device, once, before any other CUDA call.

    Leaving a ``with cupy.cuda.Device(i):`` block sets the device current before it again,
    and ``cudaSetDevice`` creates that device's context: a process that never chose one
    would put a context on GPU 0 (cupy/cuda/device.pyx, ``Device.__exit__``).
    """
    importlib.import_module("cupy").cuda.Device(index).use()


def device_error_for(exc: BaseException) -> DeviceError | None:
    """Translate a GPU failure into a clear :class:`DeviceError` (else None).

    Recognises CuPy's out-of-memory and CUDA errors, and a missing CUDA library or
    driver by what the error says (see :func:`mlp_xp.devices.diagnose`), so CuPy
    need not be imported to check.
    """
    found = diagnose(exc)
    if found is None:
        return None
    reason, fix = found
    return DeviceError(f"{reason}; {fix}")
