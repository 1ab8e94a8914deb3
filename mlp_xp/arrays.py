"""What an input array is and where it lives: NumPy, pandas, CuPy, or anything that speaks DLPack.

The package takes data as users hold it: NumPy arrays (and lists), pandas frames and
series, CuPy arrays, and any array that implements the DLPack protocol
(``__dlpack__``/``__dlpack_device__``: PyTorch CPU or CUDA tensors, JAX arrays, ...).
:func:`locate` says where such an array's memory is; :func:`host_array` reads one that is
in host memory as a NumPy array without a copy where the producer allows it. A backend
(:meth:`mlp_xp.backends.Backend.accept`) uses these to take an array in place when it is
already on its device, move it once when it is on the host, and refuse it, naming both
devices, when it is on another device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from .errors import DataError, first_line

if TYPE_CHECKING:
    from .backends import Backend

__all__ = [
    "Array",
    "ArrayLike",
    "Location",
    "locate",
    "describe",
    "host_array",
    "DLPACK_CPU",
    "DLPACK_CUDA",
]

#: An array of a backend's namespace (NumPy, CuPy or array-api-strict) on its device.
Array: TypeAlias = Any
#: Data as users hold it: NumPy, pandas, lists, CuPy, or any array that speaks DLPack.
ArrayLike: TypeAlias = Any

#: DLPack device types (``DLDeviceType``) this package knows by name.
DLPACK_CPU, DLPACK_CUDA, DLPACK_CUDA_HOST, DLPACK_CUDA_MANAGED = 1, 2, 3, 13
_DLPACK_NAMES = {4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi", 10: "rocm", 14: "oneapi"}


@dataclass(frozen=True)
class Location:
    """Where an array's memory is: ``kind`` is ``"cpu"``, ``"gpu"`` (a CUDA device,
    ``index``), ``"strict"`` (an array-api-strict array) or ``"other"`` (``name`` says which)."""

    kind: str
    index: int = 0
    name: str = ""

    def __str__(self) -> str:
        if self.kind == "gpu":
            return f"gpu:{self.index}"
        return self.name or self.kind


def _library(x: Any) -> str:
    return type(x).__module__.split(".")[0]


def locate(x: Any) -> Location:
    """Where ``x`` lives. Objects that are not arrays (lists, scalars) are on the host."""
    library = _library(x)
    if library == "cupy" and hasattr(getattr(x, "device", None), "id"):
        return Location("gpu", int(x.device.id))
    if library == "array_api_strict":
        return Location("strict", name=str(x.device))
    if isinstance(x, (np.ndarray, np.generic)) or library == "pandas":
        return Location("cpu")
    probe = getattr(x, "__dlpack_device__", None)
    if probe is None:
        return Location("cpu")
    kind, index = (int(v) for v in probe())
    if kind in (DLPACK_CPU, DLPACK_CUDA_HOST):
        return Location("cpu")
    if kind in (DLPACK_CUDA, DLPACK_CUDA_MANAGED):
        return Location("gpu", index)
    return Location("other", index, f"{_DLPACK_NAMES.get(kind, f'DLPack device {kind}')}:{index}")


def describe(x: Any) -> str:
    """Name an array for an error message: ``"cupy array on gpu:1"``, ``"torch.Tensor on
    gpu:0"``, ``"numpy array"``, ``"pandas DataFrame"``."""
    library = _library(x)
    if library in ("numpy", "cupy", "array_api_strict") and hasattr(x, "shape"):
        kind = f"{library} array"
    elif library in ("builtins", "numpy"):
        kind = type(x).__name__
    elif library == "pandas":
        kind = f"pandas {type(x).__name__}"
    else:
        kind = f"{library}.{type(x).__name__}"
    where = locate(x)
    if where.kind == "cpu" and library in ("numpy", "pandas", "builtins"):
        return kind
    return f"{kind} on {where}"


def host_array(x: Any, what: str = "input") -> np.ndarray:
    """A NumPy array of host data ``x``: a view where the producer allows one, else a copy.

    DLPack producers on the host (PyTorch CPU tensors, JAX CPU arrays) are read through
    :func:`numpy.from_dlpack` (no copy); pandas through ``to_numpy``; anything else
    through :func:`numpy.asarray`. What cannot be read is a :class:`~mlp_xp.errors.DataError`.
    """
    if isinstance(x, np.ndarray):
        return x
    try:
        if _library(x) == "pandas":
            return np.asarray(x.to_numpy())
        if hasattr(x, "__dlpack__") and not isinstance(x, np.generic):
            try:
                return np.from_dlpack(x)
            except (BufferError, TypeError, RuntimeError):
                pass  # e.g. a tensor that requires grad, or an old producer: try __array__
        return np.asarray(x)
    except Exception as exc:
        reason = first_line(exc)
        raise DataError(f"{what} ({describe(x)}) cannot be read as an array: {reason}") from exc


def device_array(backend: Backend, x: ArrayLike, what: str = "input") -> Array:
    """``x`` on ``backend``'s device: in place when it is there already, else moved once.

    An array on another device is a :class:`~mlp_xp.errors.BackendMismatchError`
    naming both (:meth:`~mlp_xp.backends.Backend.accept`).
    """
    x = backend.accept(x, what)
    return x if backend.owns(x) else backend.put(x)


def as_rows(backend: Backend, X: ArrayLike, n_features: int) -> Array:
    """Input rows on ``backend``'s device, ``n_features`` wide, in their own dtype.

    An array already on the device (including a CUDA PyTorch or JAX array given to a
    GPU model, through DLPack) is used in place; host data (NumPy, pandas, PyTorch CPU
    tensors, ...) is moved once; an array on another device is a
    :class:`~mlp_xp.errors.BackendMismatchError` naming both. The dtype is kept (uint8
    pixels stay uint8 on the device, for a trainer that scales them per batch).
    """
    X = device_array(backend, X, "input")
    if len(X.shape) != 2 or X.shape[1] != n_features:
        raise DataError(
            f"input has shape {tuple(X.shape)} but the model expects (N, {n_features}) features"
        )
    return X


def to_device(backend: Backend, a: ArrayLike, dtype: Any, what: str, floats: Any) -> Array:
    """``a`` (already checked: :func:`~mlp_xp.data.door.check_data`) on ``backend``'s device
    in ``dtype``; with ``dtype=None`` integers become int64 and floats ``floats``.

    An array already on the device (CuPy, or a CUDA tensor through DLPack) is used in place
    when its dtype is ``dtype``; host data is copied once.
    """
    a = backend.accept(a, what)  # in place on its device, host data, or a mismatch
    if not backend.owns(a):
        if dtype is None:
            dtype = np.int64 if a.dtype.kind in "biu" else floats
        return backend.put(a, dtype)
    if dtype is not None and a.dtype != backend.dtype(dtype):
        with backend.scope():  # e.g. float64 rows on the device, a float32 model
            a = backend.xp.astype(a, backend.dtype(dtype))
    return a
