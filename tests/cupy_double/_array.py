"""The double's device array: a NumPy array that behaves, and is counted, like a CuPy 14 one.

What it imitates (each is something this package's GPU code relies on):

- an array lives on the device that was current when it was made; using it while another
  device is current raises, as CuPy does where peer access is unavailable;
- implicit conversion is refused (``np.asarray``, ``float()`` of a non-0-d array), and a
  NumPy array mixed into a device operation raises ``TypeError``;
- reductions give 0-d device arrays; boolean-mask indexing reads a count back (a sync);
- every operation that would launch work on a GPU is counted; views are free;
- while a stream is capturing a CUDA graph, work is recorded and not executed.
"""

from __future__ import annotations

import numpy as np

from . import _fusion
from ._state import (
    STATE,
    allocated,
    copied_to_device,
    copied_to_host,
    fault,
    freed,
    launched,
    synced,
)


def current_device() -> int:
    return STATE.device


class ndarray:
    """A device array held in host memory; see the module docstring."""

    __array_ufunc__ = None  # NumPy operators hand over to ours, which refuse host arrays
    __hash__ = None

    def __init__(self, a: np.ndarray, device: int, *, new: bool = True):
        self._a = a
        self._device = device
        self._block = None  # (set before allocating: a refused allocation leaves none)
        self._block = allocated(device, a.nbytes) if new else None

    def __del__(self):
        if self._block is not None:
            freed(self._block)  # back to the pool (a graph may still use it: cuda.Graph)

    # -- attributes ------------------------------------------------------------------
    def _meta(self, name):
        if STATE.fusing:
            raise AttributeError(f"a fused kernel's variables have no {name}")

    @property
    def shape(self):
        self._meta("shape")
        return self._a.shape

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        self._meta("size")
        return self._a.size

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def strides(self):
        return self._a.strides

    @property
    def nbytes(self):
        return self._a.nbytes

    @property
    def itemsize(self):
        return self._a.itemsize

    @property
    def flags(self):
        return self._a.flags

    @property
    def device(self):
        from .cuda import Device

        return Device(self._device)

    @property
    def data(self):
        """Where the memory starts (CuPy's ``MemoryPointer``): a real address here."""
        from .cuda import MemoryPointer

        return MemoryPointer(self)

    @property
    def T(self):
        self._meta("T")
        return view(self, self._a.T)

    @property
    def mT(self):
        return view(self, np.swapaxes(self._a, -1, -2))

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    # -- conversions: explicit only, and each one waits for the device -----------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def _scalar(self, what):
        if self._a.ndim != 0:
            raise TypeError(f"{what}() of a {self._a.ndim}-d device array; use .get() first")
        synced(f"{what}() of a device array")
        return self._a[()]

    def __float__(self):
        return float(self._scalar("float"))

    def __int__(self):
        return int(self._scalar("int"))

    def __bool__(self):
        return bool(self._scalar("bool"))

    def __index__(self):
        return int(self._scalar("index"))

    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        copied_to_host()
        return self._a.item()

    def get(self, stream=None, order="C", out=None):
        copied_to_host()
        return np.array(self._a, copy=True)

    def tolist(self):
        return self.get().tolist()

    def set(self, arr, stream=None):
        arr = np.asarray(arr)
        if arr.shape != self._a.shape:
            raise ValueError(f"shape mismatch: {arr.shape} into {self._a.shape}")
        copied_to_device()
        self._a[...] = arr

    def __repr__(self):
        return repr(self.get())

    __str__ = __repr__

    def __format__(self, spec):
        return format(self.get(), spec)

    # -- indexing ----------------------------------------------------------------------
    def __getitem__(self, key):
        if STATE.fusing:
            raise TypeError("'_FusionVarArray' object is not subscriptable")
        parts = key if isinstance(key, tuple) else (key,)
        if not any(isinstance(k, (ndarray, np.ndarray, list)) for k in parts):
            got = self._a[key]  # basic indexing: a view, no work
            if not isinstance(got, np.ndarray):  # a[2] of a 1-d array: a 0-d view, as CuPy
                got = self._a[(*parts, Ellipsis)]
            return view(self, got)
        host = any(isinstance(k, (np.ndarray, list)) for k in parts)
        if host:
            copied_to_device()  # CuPy copies a host index to the device first
        masks = [k for k in parts if isinstance(k, ndarray) and k.dtype == np.bool_]
        if masks:
            synced("boolean mask indexing")  # CuPy reads the number of True values back
        key = _unwrap(key, allow_host=True)
        return run(lambda: self._a[key], [self], launches=2 if masks else 1)

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):
            raise TypeError(f"Unsupported type {type(value)}")
        if STATE.fusing:
            if key is not Ellipsis and key != slice(None):
                raise ValueError("The fusion supports `[...]` or `[:]`.")
            self._a[...] = _unwrap(value)
            return
        parts = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (np.ndarray, list)) for k in parts):
            copied_to_device()
        if any(isinstance(k, ndarray) and k.dtype == np.bool_ for k in parts):
            synced("boolean mask assignment")
        key, val = _unwrap(key, allow_host=True), _unwrap(value)

        def assign():
            self._a[key] = val

        run(assign, [self, value], writes=[self])

    # -- methods -----------------------------------------------------------------------
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = np.dtype(dtype)
        if not copy and dtype == self._a.dtype:
            return self
        return run(lambda: self._a.astype(dtype), [self])

    def copy(self, order="C"):
        return run(lambda: self._a.copy(), [self])

    def view(self, dtype=None):
        return view(self, self._a.view() if dtype is None else self._a.view(dtype))

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return reshaped(self, tuple(shape))

    def ravel(self):
        return reshaped(self, (-1,))

    def flatten(self):
        return self.copy().reshape(-1)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return view(self, self._a.transpose(*axes) if axes else self._a.T)

    def swapaxes(self, a, b):
        return view(self, np.swapaxes(self._a, a, b))

    def squeeze(self, axis=None):
        return view(self, np.squeeze(self._a, axis))

    def fill(self, value):
        def do():
            self._a.fill(value)

        run(do, [self], writes=[self])

    def __getattr__(self, name):  # sum, max, argmax, ... as methods
        from . import cupy as module

        fn = getattr(module, name, None)
        if name.startswith("_") or fn is None or name not in _METHODS:
            raise AttributeError(name)
        return lambda *args, **kwargs: fn(self, *args, **kwargs)

    # -- operators ---------------------------------------------------------------------
    def _bin(self, fn, other, reflected=False):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {type(other)}")
        a, b = (other, self) if reflected else (self, other)
        return elementwise(fn, a, b)

    def _inplace(self, fn, other):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {type(other)}")
        elementwise(fn, self, other, out=self)
        return self

    def __neg__(self):
        return elementwise(np.negative, self)

    def __pos__(self):
        return self

    def __abs__(self):
        return elementwise(np.absolute, self)

    def __invert__(self):
        return elementwise(np.invert, self)

    def __matmul__(self, other):
        from . import cupy as module

        return module.matmul(self, other)

    def __rmatmul__(self, other):
        from . import cupy as module

        return module.matmul(other, self)

    def __dlpack__(self, *args, **kwargs):
        raise BufferError("a device array cannot be exported to the host with DLPack")

    def __dlpack_device__(self):
        return (2, self._device)  # kDLCUDA, this device

    def _shared_memory(self):
        """What a CUDA DLPack capsule of this array would point to (for ``from_dlpack``)."""
        return self


_METHODS = {"sum", "max", "min", "mean", "prod", "argmax", "argmin", "all", "any", "dot", "var"}

_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.true_divide,
    "floordiv": np.floor_divide,
    "mod": np.remainder,
    "pow": np.power,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "lshift": np.left_shift,
    "rshift": np.right_shift,
}
for _name, _fn in _BINARY.items():
    setattr(ndarray, f"__{_name}__", lambda self, o, _f=_fn: self._bin(_f, o))
    setattr(ndarray, f"__r{_name}__", lambda self, o, _f=_fn: self._bin(_f, o, True))
    setattr(ndarray, f"__i{_name}__", lambda self, o, _f=_fn: self._inplace(_f, o))
for _name, _fn in {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}.items():
    setattr(ndarray, f"__{_name}__", lambda self, o, _f=_fn: self._bin(_f, o))
ndarray.__module__ = "cupy"


# --------------------------------------------------------------------------
# running operations
# --------------------------------------------------------------------------


def _unwrap(x, allow_host=False):
    """The NumPy data behind device arrays; host arrays are refused (as CuPy does)."""
    if isinstance(x, ndarray):
        if x._device != STATE.device:
            raise ValueError(
                f"The device where the array resides ({x._device}) is different from the "
                f"current device ({STATE.device}). Peer access is unavailable between these "
                "devices."
            )
        return x._a
    if isinstance(x, np.ndarray) and not allow_host:
        raise TypeError(f"Unsupported type {type(x)}")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, allow_host) for v in x)
    return x


def wrap(result):
    """New device arrays for an operation's results (0-d arrays for scalars)."""
    if isinstance(result, tuple):
        return tuple(wrap(r) for r in result)
    if isinstance(result, (np.ndarray, np.generic)) or np.isscalar(result):
        return ndarray(np.asarray(result), STATE.device)
    return result


def view(base: ndarray, a: np.ndarray) -> ndarray:
    """A view of ``base``'s memory: no launch, no allocation."""
    return ndarray(a, base._device, new=False)


def reshaped(x: ndarray, shape) -> ndarray:
    out = np.reshape(x._a, shape)
    if np.shares_memory(out, x._a):
        return view(x, out)
    return run(lambda: np.reshape(x._a, shape).copy(), [x])


def run(compute, arrays, *, writes=(), launches: int = 1):
    """Run one device operation: count it, or record it when a stream is capturing.

    ``compute()`` does the work on the NumPy data and returns the result (or None when
    it only writes ``writes`` in place). ``arrays`` are the device arrays it reads, for
    the current-device check.
    """
    for a in arrays:
        _unwrap(a) if isinstance(a, ndarray) else None

    def compute_new():
        """The result, or None when it is one of the arrays written in place (``out=``)."""
        result = compute()
        return None if any(result is w._a for w in writes) else result

    stream = STATE.capturing
    if stream is None or STATE.replaying or STATE.fusing:
        launched(launches)
        return wrap(compute_new())
    # capturing: the work is recorded, not executed (its inputs may not hold data yet)
    if writes:  # it only writes arrays that exist: nothing to learn by running it
        stream._capture.append(compute)
        return None
    out = wrap(compute())  # it makes a new array: run it once for the shape (CuPy would
    # allocate it, unfilled); the graph keeps its memory's address, not the array
    targets = [t._a for t in (out if isinstance(out, tuple) else (out,))]

    def replay():
        fresh = compute()
        for t, r in zip(targets, fresh if isinstance(fresh, tuple) else (fresh,), strict=True):
            t[...] = r

    stream._capture.append(replay)
    return out


def elementwise(fn, *args, out=None):
    """A ufunc on device arrays and Python/NumPy scalars: one launch."""
    if fault("nvrtc") and not STATE.fusing:  # every kernel is compiled on first use
        from ._faults import missing_nvrtc

        raise missing_nvrtc()
    if STATE.fusing:
        data = [_unwrap(a) for a in args]
        typed = _fusion.typed(fn, args, None if out is None else out)  # scalars: CuPy's loop
        if typed is not None:
            return out if out is not None else ndarray(typed, STATE.device, new=False)
        if out is None:
            return ndarray(np.asarray(fn(*data)), STATE.device, new=False)
        fn(*data, out=_unwrap(out))
        return out
    data = [_unwrap(a) for a in args]
    if out is None:
        return run(lambda: fn(*data), args)
    target = _unwrap(out)

    def do():
        fn(*data, out=target)

    run(do, [*args, out], writes=[out])
    return out
