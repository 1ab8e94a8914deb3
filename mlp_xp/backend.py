"""Array backends: which array module (``xp``) the math runs on, and where.

This is the only module that imports CuPy, and it does so lazily, the first time
a GPU is asked for or probed: ``import mlp_xp`` never loads CuPy.

A :class:`Backend` owns the array module ``xp``, the host->device and
device->host transfers, ``synchronize()`` for honest timing, and a memory
reading. Three exist:

``numpy``            the CPU (always available)
``cupy``             a CUDA GPU through CuPy (``pip install mlp-xp[gpu]``)
``array_api_strict`` the Array API reference namespace, on the CPU; used by the
                     tests to prove the math touches nothing NumPy-only
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import host
from .errors import BackendMismatchError, ConfigError, DeviceError

__all__ = ["Backend", "get_backend", "gpu_probe", "GpuProbe", "available_backends"]

ENV_VAR = "MLP_XP_DEVICE"

_CPU_NAMES = {"cpu", "numpy"}
_GPU_NAMES = {"gpu", "cuda", "cupy"}
_STRICT_NAMES = {"array-api-strict", "array_api_strict", "strict"}


@dataclass(frozen=True)
class GpuProbe:
    """Outcome of looking for a usable CUDA device through CuPy.

    ``ok`` is True only when CuPy imports, at least one device is visible and a
    tiny allocation and kernel launch on it succeed. Otherwise ``reason`` says
    which of those failed and ``fix`` says what to do about it.
    """

    ok: bool
    reason: str = ""
    fix: str = ""
    device_name: str = ""
    cupy_version: str = ""


@functools.lru_cache(maxsize=1)
def gpu_probe() -> GpuProbe:
    """Probe once per process for a working CuPy device (the tests share this)."""
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken CUDA library at import
        kind = (
            "not installed" if isinstance(exc, ModuleNotFoundError) else f"failed to import ({exc})"
        )
        return GpuProbe(
            False,
            f"CuPy is {kind}",
            "install the GPU extra: pip install 'mlp-xp[gpu]' (or cupy-cuda13x for CUDA 13)",
        )
    version = getattr(cupy, "__version__", "?")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return GpuProbe(
            False,
            f"the CUDA driver could not be queried ({_one_line(exc)})",
            "check the NVIDIA driver with nvidia-smi",
            cupy_version=version,
        )
    if count < 1:
        return GpuProbe(
            False,
            "no CUDA device is visible",
            "check CUDA_VISIBLE_DEVICES and nvidia-smi",
            cupy_version=version,
        )
    try:
        total = int(cupy.arange(4, dtype=cupy.float32).sum().item())
        if total != 6:
            raise RuntimeError(f"a test kernel returned {total}, expected 6")
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception as exc:
        return GpuProbe(
            False,
            f"the CUDA device does not work ({_one_line(exc)})",
            "check the driver/CUDA version match of your CuPy wheel",
            cupy_version=version,
        )
    return GpuProbe(True, device_name=name, cupy_version=version)


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

    def __init__(self, xp: Any, device: str, note: str = ""):
        self.xp = xp
        self.device = device
        self.note = note

    # -- identity ----------------------------------------------------------
    @property
    def key(self) -> tuple:
        """What identifies the device: equal keys, equal backends."""
        return (self.name,)

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
        if not self.owns(a) and array_kind(a) in _DEVICE_ARRAYS:
            raise BackendMismatchError(
                f"got a {array_kind(a)} but this backend is {self.name} ({self.kind}); "
                "move it to the host first"
            )
        return self.xp.asarray(a, dtype=dtype)

    def _get(self, a: Any) -> np.ndarray:
        return np.asarray(a)

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
                f"{what} is a {array_kind(x)} but the model lives on {self.name} "
                f"({self.kind}); move it first with backend.put(...) or model.to(...)"
            )
        return x

    def __repr__(self) -> str:
        return f"<Backend {self.name} on {self.device}>"

    def describe(self) -> dict:
        """A JSON-able summary, as printed by ``mlp-xp devices --json``."""
        return {"backend": self.name, "kind": self.kind, "device": self.device}


def _tree_map(tree: Any, fn) -> Any:
    """Apply ``fn`` to every leaf of nested dicts, lists and tuples (``None`` stays)."""
    if isinstance(tree, dict):
        return {k: _tree_map(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_map(v, fn) for v in tree)
    return None if tree is None else fn(tree)


_DEVICE_ARRAYS = ("cupy array", "array_api_strict array")


def array_kind(x: Any) -> str:
    """Name the library an array comes from, for error messages."""
    module = type(x).__module__.split(".")[0]
    return {
        "numpy": "numpy array",
        "cupy": "cupy array",
        "array_api_strict": "array_api_strict array",
    }.get(module, f"{type(x).__name__}")


class NumpyBackend(Backend):
    name = "numpy"
    kind = "cpu"

    def __init__(self, note: str = ""):
        super().__init__(np, f"cpu ({_cpu_label()})", note)

    def owns(self, x: Any) -> bool:
        # NumPy's reductions return scalars (np.generic): its 0-d arrays
        return isinstance(x, (np.ndarray, np.generic))


class StrictBackend(Backend):
    """The Array API reference implementation; proves the math is portable."""

    name = "array_api_strict"
    kind = "cpu"

    def __init__(self):
        xp = importlib.import_module("array_api_strict")
        super().__init__(xp, f"cpu ({_cpu_label()}), array-api-strict")

    def _put(self, a: Any, dtype: Any) -> Any:
        if isinstance(a, np.ndarray) and a.dtype.kind in "biuf":
            a = np.asarray(a, order="C")  # keeps 0-d arrays 0-d (ascontiguousarray does not)
        return super()._put(a, dtype)

    def _get(self, a: Any) -> np.ndarray:
        return np.from_dlpack(a) if self.owns(a) else np.asarray(a)

    def owns(self, x: Any) -> bool:
        return (
            isinstance(x, self.xp.Array)
            if hasattr(self.xp, "Array")
            else type(x).__module__.startswith("array_api_strict")
        )


def _cupy_namespace(cupy):
    """CuPy as a standard Array API namespace.

    ``array_api_compat.cupy`` (installed by the ``gpu`` extra) fills the gaps
    between CuPy's NumPy-style API and the standard; without it, the few
    standard names the shared math uses are added to a thin proxy of CuPy.
    """
    try:
        return importlib.import_module("array_api_compat.cupy")
    except ImportError:
        pass
    import types

    ns = types.ModuleType("cupy_array_api")
    ns.__dict__.update({k: getattr(cupy, k) for k in dir(cupy) if not k.startswith("__")})
    if not hasattr(cupy, "concat"):
        ns.concat = lambda arrays, /, *, axis=0: cupy.concatenate(arrays, axis=axis)
    if not hasattr(cupy, "astype"):
        ns.astype = lambda x, dtype, /, *, copy=True: x.astype(dtype, copy=copy)

    def asarray(obj, /, *, dtype=None, device=None, copy=None):
        if copy:
            return cupy.array(obj, dtype=dtype, copy=True)
        return cupy.asarray(obj, dtype=dtype)

    ns.asarray = asarray
    return ns


class CupyBackend(Backend):
    name = "cupy"
    kind = "gpu"

    def __init__(self, probe: GpuProbe):
        self.cupy = importlib.import_module("cupy")
        super().__init__(
            _cupy_namespace(self.cupy), f"gpu ({probe.device_name}, CuPy {probe.cupy_version})"
        )

    def _get(self, a: Any) -> np.ndarray:
        return self.cupy.asnumpy(a) if self.owns(a) else np.asarray(a)

    def synchronize(self) -> None:
        self.cupy.cuda.get_current_stream().synchronize()

    def memory_info(self) -> dict:
        info = super().memory_info()
        pool = self.cupy.get_default_memory_pool()
        info.update(
            gpu_pool_used_bytes=int(pool.used_bytes()), gpu_pool_total_bytes=int(pool.total_bytes())
        )
        return info

    def owns(self, x: Any) -> bool:
        return isinstance(x, self.cupy.ndarray)


def get_backend(spec: str | Backend | None = None) -> Backend:
    """Choose the array backend.

    Parameters
    ----------
    spec : {"auto", "cpu", "gpu", "array-api-strict"} or Backend, optional
        ``auto`` (the default, or the ``MLP_XP_DEVICE`` environment variable)
        picks CuPy when a usable CUDA device is present, else NumPy, and records
        why in ``backend.note``. ``gpu`` without a usable GPU raises
        :class:`~mlp_xp.errors.DeviceError` naming the reason and the fix.

    Returns
    -------
    Backend
    """
    if isinstance(spec, Backend):
        return spec
    if spec is None:
        spec = os.environ.get(ENV_VAR, "").strip() or "auto"
    key = str(spec).strip().lower()
    if key in _CPU_NAMES:
        return NumpyBackend()
    if key in _STRICT_NAMES:
        try:
            return StrictBackend()
        except ImportError as exc:
            raise DeviceError(
                "array-api-strict is not installed (pip install array-api-strict)"
            ) from exc
    probe = gpu_probe() if key in _GPU_NAMES | {"auto"} else None
    if key in _GPU_NAMES:
        if not probe.ok:
            raise DeviceError(f"no usable GPU: {probe.reason}; {probe.fix}, or use --device cpu")
        return CupyBackend(probe)
    if key == "auto":
        if probe.ok:
            return CupyBackend(probe)
        return NumpyBackend(note=f"{probe.reason}, so the CPU is used")
    raise ConfigError(f"unknown device {spec!r}: choose auto, cpu or gpu")


def device_error_for(exc: BaseException) -> DeviceError | None:
    """Translate a GPU library failure into a clear :class:`DeviceError` (else None).

    Recognises CuPy's out-of-memory and CUDA runtime errors by their class, so
    CuPy need not be imported to check.
    """
    cls = type(exc)
    if not cls.__module__.startswith("cupy"):
        return None
    if "OutOfMemory" in cls.__name__:
        return DeviceError(
            f"the GPU ran out of memory ({_one_line(exc)}); try a smaller "
            "--batch-size, a smaller network, or --device cpu"
        )
    return DeviceError(f"GPU error: {_one_line(exc)}; try --device cpu")


def available_backends() -> list[dict]:
    """Every backend this process could use, with availability and reasons."""
    rows = [dict(NumpyBackend().describe(), available=True, reason="")]
    probe = gpu_probe()
    if probe.ok:
        rows.append(dict(CupyBackend(probe).describe(), available=True, reason=""))
    else:
        rows.append(
            {
                "backend": "cupy",
                "kind": "gpu",
                "device": "",
                "available": False,
                "reason": f"{probe.reason}; {probe.fix}",
            }
        )
    return rows
