"""Array backends: which array module (``xp``) the math runs on, and where.

This is the only module that imports CuPy, and it does so lazily, the first time
a GPU is asked for or probed: ``import mlp_xp`` never loads CuPy.

A :class:`Backend` owns the array module ``xp``, the host->device and
device->host transfers, ``synchronize()`` for honest timing, and a memory
reading. Three exist:

``numpy``            the CPU (always available)
``cupy``             one CUDA GPU through CuPy (``pip install mlp-xp[gpu]``): ``gpu`` is
                     GPU 0, ``gpu:N`` (or ``cuda:N``) GPU N
``array_api_strict`` the Array API reference namespace, on the CPU; used by the
                     tests to prove the math touches nothing NumPy-only (and, on its
                     simulated devices, that it creates every array on its device)

CuPy makes new arrays on the *current* device, so a backend's device is made current
around the work done on it: ``with backend.scope():`` (the model, the optimizers and the
training loop enter it themselves). Nothing lands on GPU 0 when GPU 1 was asked for.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import host
from .arrays import Location, describe, host_array, locate
from .devices import INSTALL_FIX, GpuProbe, cupy_namespace, diagnose, parse_device, probe_gpu
from .errors import BackendMismatchError, DeviceError
from .scope import scoped_device

__all__ = ["Backend", "get_backend", "gpu_probe", "GpuProbe", "device_error_for"]

ENV_VAR = "MLP_XP_DEVICE"
_NO_SCOPE = contextlib.nullcontext()


@functools.cache
def gpu_probe(index: int = 0) -> GpuProbe:
    """Probe GPU ``index`` once per process (a cuBLAS matmul and an NVRTC-compiled kernel)."""
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken CUDA library at import
        if isinstance(exc, ModuleNotFoundError) and exc.name == "cupy":
            return GpuProbe(False, "CuPy is not installed", INSTALL_FIX, index=index)
        reason, fix = diagnose(exc) or (f"CuPy failed to import ({_one_line(exc)})", INSTALL_FIX)
        return GpuProbe(False, reason, fix, index=index)
    return probe_gpu(cupy, index)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _cpu_label() -> str:
    """``"<CPU name>, <N> cores"`` on any OS (:func:`mlp_xp.host.cpu_label`)."""
    return host.cpu_label()


class Backend:
    """A device and the array module ``xp`` whose arrays live on it.

    Backends compare equal when they are the same device, so they can key
    caches and be checked with ``==``. :meth:`put` and :meth:`get` move whole
    containers of arrays (a dict, list or tuple, nested as deep as needed)
    between the host and the device, as Chainer's ``Device.send`` does.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"cupy"`` or ``"array_api_strict"``.
    xp : module
        The array namespace all math is written against.
    kind : str
        ``"cpu"`` or ``"gpu"``.
    device : str
        Human-readable device label, e.g. ``"cpu (AMD EPYC, 2 cores)"``.
    note : str
        Why this backend was chosen when ``auto`` had to fall back, else ``""``.
    """

    name = "abstract"
    kind = "cpu"
    writes_out = False  # whether matmul/sum take out= (NumPy and CuPy; not the standard)

    def __init__(self, xp: Any, device: str, note: str = ""):
        self.xp = xp
        self.device = device
        self.note = note

    # -- identity ----------------------------------------------------------
    @property
    def key(self) -> tuple:
        """What identifies the device: equal keys, equal backends."""
        return (self.name,)

    @property
    def spec(self) -> str:
        """The device's name as :func:`get_backend` takes it: ``"cpu"``, ``"gpu:1"``, ..."""
        return "cpu"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backend) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    # -- transfers ---------------------------------------------------------
    def put(self, tree: Any, dtype: Any = None) -> Any:
        """Move host data onto this device: an array, a scalar, or a container of them.

        Arrays already on this device are returned as they are (no copy) unless
        ``dtype`` asks for a conversion. ``dtype`` may be a NumPy dtype or name;
        it is mapped to ``xp``'s. An array of another backend is refused with
        :class:`~mlp_xp.errors.BackendMismatchError` naming both.
        """
        if dtype is not None:
            dtype = self.dtype(dtype)
        return _tree_map(tree, lambda a: self._put(a, dtype))

    def get(self, tree: Any) -> Any:
        """Copy device arrays (in any container) to host NumPy arrays.

        On the CPU the result may share memory with the device array; copy it
        before changing it.
        """
        return _tree_map(tree, self._get)

    def _put(self, a: Any, dtype: Any) -> Any:
        return self.xp.asarray(self.accept(a, "data"), dtype=dtype)

    def accept(self, x: Any, what: str = "input") -> Any:
        """``x`` as an array of this device, or as host NumPy data for :meth:`put` to move.

        An array of this device is returned as it is; a DLPack array on this device (a
        CUDA PyTorch tensor given to a GPU backend, say) is taken in place, without a
        copy; host data (NumPy, pandas, lists, DLPack arrays in host memory such as
        PyTorch CPU tensors or JAX CPU arrays) comes back as a NumPy array, a view
        where the producer allows one. An array on another device is a
        :class:`~mlp_xp.errors.BackendMismatchError` naming both devices.
        """
        if self.owns(x):
            return x
        where = locate(x)
        if where.kind == "cpu":
            return host_array(x, what)
        taken = self._take(x, where)
        if taken is None:
            raise BackendMismatchError(
                f"{what} is a {describe(x)} but the model lives on {self} ({self.kind}); "
                "move it first with backend.put(...) or model.to(...)"
            )
        return taken

    def _take(self, x: Any, where: Location) -> Any:
        """A zero-copy array of this device over ``x``'s memory at ``where``, or None."""
        return None

    def op_counts(self) -> dict | None:
        """Launches, syncs and copies done so far, where the array module can count them
        (the counting CuPy double of the tests); None elsewhere."""
        return None

    def _get(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def scope(self) -> contextlib.AbstractContextManager:
        """A context in which new arrays land on this backend's device (CuPy's current device)."""
        return _NO_SCOPE

    def synchronize(self) -> None:
        """Block until all queued device work has finished (a no-op on the CPU)."""

    def dtype(self, name: Any) -> Any:
        """This namespace's dtype for a NumPy dtype, a name like ``"float32"``, or its own."""
        try:
            return getattr(self.xp, np.dtype(name).name)
        except TypeError:  # already a dtype of this namespace (e.g. array_api_strict's)
            return name

    def memory_info(self) -> dict:
        """Memory in use: ``host_peak_rss_bytes`` (the process's peak resident memory on
        Linux, macOS and Windows, :func:`mlp_xp.host.peak_rss_bytes`; ``None`` where the OS
        gives no reading), plus GPU pool bytes on CuPy."""
        return {"host_peak_rss_bytes": host.peak_rss_bytes()}

    # -- checks ------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend."""
        raise NotImplementedError

    def check(self, x: Any, what: str = "input") -> Any:
        """Return ``x`` if it belongs to this backend, else raise a clear error."""
        if not self.owns(x):
            raise BackendMismatchError(
                f"{what} is a {describe(x)} but the model lives on {self} "
                f"({self.kind}); move it first with backend.put(...) or model.to(...)"
            )
        return x

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Backend {self.spec!r}: {self.name} on {self.device}>"

    def describe(self) -> dict:
        """A JSON-able summary, as printed by ``mlp-xp devices --json``."""
        return {"backend": self.name, "kind": self.kind, "device": self.device}


def _tree_map(tree: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every leaf of nested dicts, lists and tuples (``None`` stays)."""
    if isinstance(tree, dict):
        return {k: _tree_map(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_map(v, fn) for v in tree)
    return None if tree is None else fn(tree)


def array_kind(x: Any) -> str:
    """Name the library an array comes from, and its device when not the host, for messages."""
    return describe(x)


class NumpyBackend(Backend):
    name = "numpy"
    kind = "cpu"
    writes_out = True

    def __init__(self, note: str = ""):
        super().__init__(np, f"cpu ({_cpu_label()})", note)

    def owns(self, x: Any) -> bool:
        # NumPy's reductions return scalars (np.generic): its 0-d arrays
        return isinstance(x, (np.ndarray, np.generic))


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

    def owns(self, x: Any) -> bool:
        return isinstance(x, self.cupy.ndarray) and x.device.id == self.index

    def op_counts(self) -> dict | None:
        if not getattr(self.cupy, "__counting_double__", False):
            return None
        return self.cupy.counts().as_dict()


def get_backend(spec: str | Backend | None = None) -> Backend:
    """Choose the array backend.

    Parameters
    ----------
    spec : {"auto", "cpu", "gpu", "gpu:N", "cuda:N", "array-api-strict"} or Backend, optional
        ``None`` and ``auto`` are the device of the innermost ``with mlp_xp.device(...)``
        block (:func:`mlp_xp.device`) where there is one. Otherwise ``None`` is the
        ``MLP_XP_DEVICE`` environment variable, else ``auto``, which picks CuPy on GPU 0
        when it passes the probe, else NumPy, and records why in ``backend.note``.
        ``gpu`` is ``gpu:0``; ``gpu:N`` without a usable GPU N raises
        :class:`~mlp_xp.errors.DeviceError` naming the reason and the fix.

    Returns
    -------
    Backend
    """
    if isinstance(spec, Backend):
        return spec
    scoped = scoped_device()
    if scoped is not None and (spec is None or str(spec).strip().lower() == "auto"):
        return scoped
    if spec is None:
        spec = os.environ.get(ENV_VAR, "").strip() or "auto"
    device = parse_device(spec)
    if device.kind == "cpu":
        return NumpyBackend()
    if device.kind == "strict":
        try:
            from .strict import StrictBackend  # the reference namespace, imported on demand

            return StrictBackend(device.name)
        except ImportError as exc:
            raise DeviceError(
                "array-api-strict is not installed (pip install array-api-strict)"
            ) from exc
    probe = gpu_probe(device.index)
    if device.kind == "gpu":
        if not probe.ok:
            name = f"GPU {device.index}" if device.index else "GPU"
            raise DeviceError(f"no usable {name}: {probe.reason}; {probe.fix}, or use --device cpu")
        return CupyBackend(probe)
    if probe.ok:
        return CupyBackend(probe)
    return NumpyBackend(note=f"{probe.reason}, so the CPU is used")


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
