"""The :class:`Backend` base: a device, the array module ``xp`` whose arrays live on it,
and the transfers between it and the host (Chainer's ``Device``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import host
from ..arrays import Location, describe, host_array, locate
from ..errors import BackendMismatchError

__all__ = ["Backend", "array_kind", "cpu_label"]

_NO_SCOPE = contextlib.nullcontext()


def cpu_label() -> str:
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
    #: The integer dtype of the dropout hash's counters (:func:`mlp_xp.functional.mix32` gives
    #: the same bits in uint32 and int64; PyTorch has no shifts on uint32, so it uses int64).
    hash_dtype = "uint32"

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
            raise self._mismatch(x, what)
        return taken

    def _mismatch(self, x: Any, what: str) -> BackendMismatchError:
        """The error for ``x``, an array of another library or device, meeting this one."""
        return BackendMismatchError(
            f"{what} is a {describe(x)} but the model lives on {self} ({self.kind}); "
            "move it first with backend.put(...) or model.to(...)"
        )

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

    def free_device_bytes(self) -> int | None:
        """Free memory on this backend's GPU; None for a device that shares host memory."""
        return None

    # -- checks ------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend."""
        raise NotImplementedError

    def check(self, x: Any, what: str = "input") -> Any:
        """Return ``x`` if it belongs to this backend, else raise a clear error."""
        if not self.owns(x):
            raise self._mismatch(x, what)
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
