"""Real CuPy without a GPU: the fused kernels' CUDA source as CuPy writes it, compiled by
the real NVRTC for a named architecture, and the strings CuPy's compiled modules hold.

CuPy needs a device to *run* a kernel, not to *write* one. A fused function called with
CuPy arrays is traced by CuPy's fusion (``cupy/_core/fusion.pyx``, ``Fusion.__call__`` and
``_FusionHistory.get_fusion``) into an ``ElementwiseKernel``, and only that kernel's call
asks for the current device (``cupy/_core/_kernel.pyx``, ``ElementwiseKernel.__call__``).
So the arrays handed to a kernel here are CuPy arrays over host memory
(:func:`device_array`) whose class takes the launch over through CuPy's
``__cupy_override_elementwise_kernel__`` hook, checked before any device call: the hook
receives the kernel and its arguments, and :func:`kernel_source` writes the kernel's source
with CuPy's own code generator (``_get_elementwise_kernel_code``), the argument types CuPy
would give it (``_ArgInfo``, ``_decide_params_type``) and the headers CuPy prepends
(``cupy/_core/core.pyx``, ``compile_with_cache``). :func:`compile_cubin` compiles it with
the options CuPy assembles (``assemble_cupy_compiler_options``, plus the ``-ftz=true`` and
``--device-as-default-execution-space`` of ``cupy/cuda/compiler.py``) and ``-arch=sm_XX``
named, so no device is asked which one it is.

What differs from a launch: every array is described at the rank of the broadcast shape
(CuPy may first merge contiguous axes, ``_reduce_dims``: the kernel body is the same, only
the ``CArray`` rank in the parameter list differs), and nothing runs.

These helpers use CuPy internals (``cupy._core._kernel``); ``.ci/run`` pins the wheel they
were written against.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

#: The architectures the kernels are compiled for: A100 (sm_80) and H100/H200 (sm_90).
ARCHS = ("80", "90")

# cupy/_core/_kernel.pxd, enum _ArgKind
_NDARRAY, _INDEXER, _SCALAR = 1, 2, 3

#: (kernel, arguments) of every launch taken over by the hook since the last clear.
LAUNCHES: list = []

_CLASSES: dict = {}


def real_cupy():
    """Real CuPy, with NVRTC loadable; a failure (not a skip) where the wheels are missing:
    these tests run only when asked for (``-m cupy_wheel``)."""
    try:
        import cupy
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # asked for with -m cupy_wheel: a missing wheel is a failure
        pytest.fail(
            f"the CuPy wheel and NVRTC are needed ({type(exc).__name__}: {exc}); "
            'pip install "cupy-cuda12x" "nvidia-cuda-nvrtc-cu12" "nvidia-cuda-runtime-cu12"'
        )
    try:
        gpus = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        gpus = 0  # no driver or no device: what these checks are made for
    if gpus:  # a launch that got past the hook would read host memory as device memory
        pytest.fail(
            "the cupy_wheel checks hand CuPy arrays over host memory: run them where no GPU "
            "is visible (CUDA_VISIBLE_DEVICES= python -m pytest -m cupy_wheel)"
        )
    return cupy


def layout(arg) -> tuple:
    """What a fused kernel's trace depends on in one argument (the double's or CuPy's)."""
    if isinstance(arg, (bool, int, float, complex)):
        return ("scalar", type(arg).__name__)
    if isinstance(arg, np.generic):
        return ("numpy scalar", arg.dtype.str)
    return ("array", np.dtype(arg.dtype).str, tuple(arg.shape), tuple(arg.strides))


def stand_in(cupy, spec: tuple):
    """An argument of layout ``spec`` for real CuPy (arrays: :func:`device_array`)."""
    kind = spec[0]
    if kind == "scalar":
        return {"bool": True, "int": 1, "float": 1.0, "complex": 1j}[spec[1]]
    if kind == "numpy scalar":
        return np.dtype(spec[1]).type(1)
    _, dtype, shape, strides = spec
    return device_array(cupy, shape, np.dtype(dtype), strides)


def device_array(cupy, shape, dtype, strides=None):
    """A ``cupy.ndarray`` over host memory: CuPy traces with it and writes kernels for it;
    a kernel launched on it is appended to :data:`LAUNCHES` instead of running."""
    cls = _CLASSES.get(id(cupy))
    if cls is None:

        class Unlaunched(cupy.ndarray):
            def __cupy_override_elementwise_kernel__(self, kernel, *args, **kwargs):
                LAUNCHES.append((kernel, args))

        cls = _CLASSES[id(cupy)] = Unlaunched
    itemsize = np.dtype(dtype).itemsize
    if strides is None:
        strides = tuple(int(np.prod(shape[i + 1 :])) * itemsize for i in range(len(shape)))
    if min(strides, default=0) < 0:
        raise ValueError(f"negative strides {strides}: not a layout the fast step makes")
    span = itemsize + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    owner = np.zeros(max(span, itemsize), dtype=np.uint8)
    memory = cupy.cuda.UnownedMemory(owner.ctypes.data, owner.nbytes, owner, device_id=0)
    pointer = cupy.cuda.MemoryPointer(memory, 0)
    return cls(tuple(shape), dtype, memptr=pointer, strides=tuple(strides))


def _array_info(cupy, a, shape):
    from cupy._core import _kernel

    view = cupy.broadcast_to(a, shape)
    small = view.size * view.itemsize < 2**31  # every offset fits CuPy's 32-bit indexing
    return _kernel._ArgInfo(
        _NDARRAY, cupy.ndarray, view.dtype, len(shape), view.flags.c_contiguous, small
    )


def kernel_source(cupy, kernel, args) -> str:
    """The CUDA source CuPy compiles for ``kernel`` launched on ``args`` (see the module
    docstring for what differs from a real launch)."""
    from cupy._core import _kernel, core
    from cupy._core._carray import Indexer
    from cupy._core._scalar import CScalar

    shape = np.broadcast_shapes(*(a.shape for a in args if isinstance(a, cupy.ndarray)))
    ins, outs = args[: kernel.nin], args[kernel.nin :]
    in_dtypes = tuple(a.dtype if isinstance(a, cupy.ndarray) else None for a in ins)
    in_types, out_types, type_map = kernel._decide_params_type(
        in_dtypes, tuple(a.dtype for a in outs)
    )
    infos = [
        _array_info(cupy, a, shape)
        if isinstance(a, cupy.ndarray)
        else _kernel._ArgInfo(_SCALAR, CScalar, np.dtype(t), 0, True, True)
        for a, t in zip(ins, in_types, strict=True)
    ]
    infos += [_array_info(cupy, a, shape) for a in outs]
    small = int(np.prod(shape)) < 2**31
    # outputs CuPy would allocate: C-contiguous arrays of the broadcast shape
    for t in out_types[len(outs) :]:
        infos.append(_kernel._ArgInfo(_NDARRAY, cupy.ndarray, np.dtype(t), len(shape), True, small))
    infos.append(_kernel._ArgInfo(_INDEXER, Indexer, None, len(shape), True, small))
    code = _kernel._get_elementwise_kernel_code(
        tuple(infos),
        type_map,
        kernel.params,
        kernel.operation,
        kernel.name,
        kernel.preamble,
        **kernel.kwargs,
    )
    headers = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    return headers + code


def compile_cubin(source: str, arch: str, options: tuple = ()) -> bytes:
    """``source`` compiled by NVRTC for ``sm_<arch>`` with CuPy's options: the cubin, or
    an ``AssertionError`` carrying NVRTC's log."""
    from cupy._core import core
    from cupy.cuda import nvrtc

    options = core.assemble_cupy_compiler_options(tuple(options)) + (
        "-ftz=true",
        f"-arch=sm_{arch}",
        "--device-as-default-execution-space",
    )
    program = nvrtc.createProgram(source, "mlp_xp_kernel.cu", (), ())
    try:
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(program)
            raise AssertionError(f"NVRTC sm_{arch}: {exc}\n{log}") from None
        return nvrtc.getCUBIN(program)
    finally:
        nvrtc.destroyProgram(program)


def module_strings(path: Path) -> bytes:
    """The bytes of a compiled module with its string constants readable: Cython 3 keeps
    a module's strings in one zlib-compressed table, which is inflated and appended."""
    data = path.read_bytes()
    parts = [data]
    for match in re.finditer(rb"\x78[\x01\x5e\x9c\xda]", data):  # zlib stream headers
        inflate = zlib.decompressobj()
        try:
            text = inflate.decompress(data[match.start() : match.start() + (1 << 22)])
        except zlib.error:
            continue
        if inflate.eof and len(text) > 64:
            parts.append(text)
    return b"\n".join(parts)


def wheel_module(package, name: str) -> Path:
    """The compiled module ``name`` (e.g. ``cublas``) of the installed ``package``."""
    found = sorted(Path(package.__file__).parent.rglob(f"{name}.*.so"))
    if not found:
        raise FileNotFoundError(f"no compiled module {name} in {package.__name__}")
    return found[0]
