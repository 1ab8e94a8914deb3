"""The counting CuPy double's exceptions, compared with the real CuPy wheel's, where the wheel
produces them without a GPU (marker ``cupy_wheel``, run by ``.ci/run`` in its own venv).

Two ways: the same mistake made on the double and on real CuPy, whose host-side checks
raise before any device is asked (arrays over host memory, ``tests/cupy_wheel.py``; CuPy's
own exception classes built from a CUDA status); and, for errors only a GPU can raise, the
double's text looked up among the strings of the wheel's compiled module that raises it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from .cupy_double import installed
from .cupy_wheel import device_array, module_strings, real_cupy, wheel_module

pytestmark = pytest.mark.cupy_wheel


def raised(fn, module) -> tuple:
    """The class (module and name) and text of what ``fn(module)`` raises."""
    try:
        fn(module)
    except Exception as exc:
        return type(exc).__module__, type(exc).__name__, str(exc)
    pytest.fail(f"{fn} raised nothing")


def _set_first(x, y):
    y[0] = x


def _throw(exc):
    raise exc


def _runtime_error(status):
    from cupy_backends.cuda.api.runtime import CUDARuntimeError

    return CUDARuntimeError(status)  # its text comes from the CUDA runtime's error tables


f32 = np.float32
#: name -> (the double's side, real CuPy's side, the double's faults)
SAME = {
    "implicit conversion to NumPy": (
        lambda cp: np.asarray(cp.zeros((2, 3), dtype=f32)),
        lambda cupy: np.asarray(device_array(cupy, (2, 3), f32)),
        (),
    ),
    "len() of a 0-d array": (
        lambda cp: len(cp.zeros((), dtype=f32)),
        lambda cupy: len(device_array(cupy, (), f32)),
        (),
    ),
    "iterating a 0-d array": (
        lambda cp: iter(cp.zeros((), dtype=f32)),
        lambda cupy: iter(device_array(cupy, (), f32)),
        (),
    ),
    "item() of six elements": (
        lambda cp: cp.zeros((2, 3), dtype=f32).item(),
        lambda cupy: device_array(cupy, (2, 3), f32).item(),
        (),
    ),
    "capturing on the default stream": (
        lambda cp: cp.cuda.Stream.null.begin_capture(),
        lambda cupy: cupy.cuda.Stream.null.begin_capture(),
        (),
    ),
    "a fused kernel writing y[0]": (
        lambda cp: cp.fuse(_set_first)(cp.zeros(3, dtype=f32), cp.zeros(3, dtype=f32)),
        lambda cupy: cupy.fuse(_set_first)(*(device_array(cupy, (3,), f32) for _ in "xy")),
        (),
    ),
    "a GPU that does not exist": (
        lambda cp: cp.cuda.Device(7).use(),  # CuPy: cudaSetDevice's cudaErrorInvalidDevice
        lambda cupy: _throw(_runtime_error(101)),
        (),
    ),
    "a driver older than the runtime": (
        lambda cp: cp.cuda.runtime.getDeviceCount(),
        lambda cupy: _throw(_runtime_error(35)),  # cudaErrorInsufficientDriver
        ("driver",),
    ),
}


@pytest.mark.parametrize("case", list(SAME))
def test_the_double_raises_what_cupy_raises(case):
    on_double, on_cupy, faults = SAME[case]
    cupy = real_cupy()
    with installed(faults=faults) as cp:
        double = raised(on_double, cp)
    assert double == raised(on_cupy, cupy)


def _cublas_during_capture(cp):
    a = cp.ones((4, 4), dtype=f32)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        cp.matmul(a, a)


def _stream_of_another_device(cp):
    with cp.cuda.Device(1):
        stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        pass


#: name -> (the double's side, (the wheel's package, its module raising it), the class)
IN_THE_WHEEL = {
    "cuBLAS while a stream captures": (
        _cublas_during_capture,
        ("cupy_backends", "cublas"),  # cupy_backends/cuda/libs/cublas.pyx, setStream
        NotImplementedError,
    ),
    "a stream used on another device": (
        _stream_of_another_device,
        ("cupy", "stream"),  # cupy/cuda/stream.pyx, check_stream_device_match
        RuntimeError,
    ),
}


@pytest.mark.parametrize("case", list(IN_THE_WHEEL))
def test_the_double_raises_a_text_the_wheel_holds(case):
    on_double, (package, name), kind = IN_THE_WHEEL[case]
    real_cupy()
    strings = module_strings(wheel_module(__import__(package), name))
    with installed() as cp, pytest.raises(kind) as caught:
        on_double(cp)
    # a formatted message: each literal part between the numbers is one string in the wheel
    parts = [p for p in re.split(r"-?\d+", str(caught.value)) if len(p) > 2]
    missing = [p for p in parts if p.encode() not in strings]
    assert parts and not missing, f"not in {name}'s strings: {missing}"
