"""Device names, the GPU probe and what a CUDA failure means (CuPy is passed in, never imported).

``--device`` (and ``get_backend``, ``MLP_XP_DEVICE``, ``model.to``) accepts ``auto``,
``cpu``, ``gpu`` (the first GPU, ``gpu:0``), ``gpu:N`` or ``cuda:N`` for GPU N through CuPy,
the PyTorch devices ``torch`` (PyTorch's best device), ``torch:cpu``, ``torch:cuda:N`` (NVIDIA,
and AMD on ROCm builds), ``mps`` (Apple GPU) and ``xpu:N`` (Intel GPU), and
``array-api-strict`` (optionally ``array-api-strict:device1``, one of the reference
namespace's simulated devices, which the tests use to prove the math names its device).

:func:`diagnose` reads an exception's class and text -- not only its module -- so a CUDA
library that is missing (cuBLAS, NVRTC, the runtime, the driver) is named with its fix,
whichever layer (CuPy, its loader, the dynamic linker) raised it.
"""

from __future__ import annotations

import importlib
import re
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, first_line

__all__ = [
    "DeviceSpec",
    "parse_device",
    "GpuProbe",
    "probe_gpu",
    "diagnose",
    "cupy_namespace",
    "INSTALL_FIX",
]

_CPU = {"cpu", "numpy"}
_STRICT = {"array-api-strict", "array_api_strict", "strict"}
_GPU = re.compile(r"^(gpu|cuda|cupy)(?::(\d+))?$")
# torch:cuda:N and xpu:N (torch: optional for xpu: plain cuda:N is CuPy's), mps, torch[:cpu]
_TORCH = re.compile(r"^(?:torch:)?(cuda|xpu)(?::(\d+))?$|^(?:torch:)?(mps)$|^torch(?::(cpu))?$")

#: How to get CuPy with the CUDA libraries it loads (only the NVIDIA driver is needed).
INSTALL_FIX = (
    "install CuPy with its CUDA libraries: pip install '.[gpu]' (CUDA 12 drivers) or "
    "'.[gpu-cuda13]' (CUDA 13 drivers)"
)


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device name: ``kind`` is auto, cpu, gpu, torch or strict."""

    kind: str
    index: int = 0  # the GPU's number for kind "gpu" (and torch's cuda and xpu)
    name: str = ""  # the array-api-strict device for kind "strict" ("" = its default);
    # PyTorch's device type for kind "torch": cpu, cuda, mps, xpu ("" = its best)


def parse_device(spec: str) -> DeviceSpec:
    """Parse ``auto``, ``cpu``, ``gpu``, ``gpu:N``, ``cuda:N``, ``torch``, ``torch:cpu``,
    ``torch:cuda:N``, ``mps``, ``xpu:N`` or ``array-api-strict[:DEVICE]``."""
    key = str(spec).strip().lower()
    if key == "auto":
        return DeviceSpec("auto")
    if key in _CPU:
        return DeviceSpec("cpu")
    base, _, _ = key.partition(":")
    if base in _STRICT:  # array-api-strict's device names are case-sensitive: CPU_DEVICE
        return DeviceSpec("strict", name=str(spec).strip().partition(":")[2])
    match = _GPU.match(key)
    if match:
        return DeviceSpec("gpu", int(match.group(2) or 0))
    match = _TORCH.match(key)
    if match:
        kind = match.group(1) or match.group(3) or match.group(4) or ""  # "" = PyTorch's best
        return DeviceSpec("torch", int(match.group(2) or 0), kind)
    raise ConfigError(
        f"unknown device {spec!r}: choose auto, cpu, gpu or gpu:N (cuda:N), "
        "or through PyTorch torch, torch:cpu, torch:cuda:N, mps or xpu:N"
    )


@dataclass(frozen=True)
class GpuProbe:
    """Outcome of looking for a usable CUDA device through CuPy.

    ``ok`` is True only when CuPy imports, the device is visible, and a cuBLAS matmul
    and a freshly compiled (NVRTC) elementwise kernel run on it and give the right
    numbers. Otherwise ``reason`` says what failed and ``fix`` what to do about it.
    """

    ok: bool
    reason: str = ""
    fix: str = ""
    device_name: str = ""
    cupy_version: str = ""
    index: int = 0
    memory_bytes: int = 0
    compute_capability: str = ""
    device_count: int = 0


def _probe_kernel(x, y):
    """The probe's fused kernel (compiled by NVRTC on first use)."""
    return x * 2.0 + y


def probe_gpu(cupy: Any, index: int = 0) -> GpuProbe:
    """Probe GPU ``index`` through the imported ``cupy`` module: count, cuBLAS, NVRTC."""
    version = str(getattr(cupy, "__version__", "?"))

    count = 0

    def failed(exc: BaseException, what: str) -> GpuProbe:
        reason, fix = diagnose(exc) or (
            f"{what} ({first_line(exc)})",
            "check that the NVIDIA driver matches your CuPy wheel (nvidia-smi)",
        )
        return GpuProbe(False, reason, fix, cupy_version=version, index=index, device_count=count)

    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return failed(exc, "the CUDA driver could not be queried")
    if count < 1:
        return GpuProbe(
            False,
            "no CUDA device is visible",
            "check CUDA_VISIBLE_DEVICES and nvidia-smi",
            cupy_version=version,
            index=index,
        )
    if index >= count:
        return GpuProbe(
            False,
            f"there is no GPU {index}: this machine shows {count} (gpu:0 to gpu:{count - 1})",
            "choose one of those, or check CUDA_VISIBLE_DEVICES",
            cupy_version=version,
            index=index,
            device_count=count,
        )
    host = np.arange(16, dtype=np.float32).reshape(4, 4)
    expected = float((host @ host * 2.0 + host).sum())
    try:
        with cupy.cuda.Device(index):
            a = cupy.asarray(host)
            fused = cupy.fuse(kernel_name="mlp_xp_probe")(_probe_kernel)
            got = float(cupy.sum(fused(cupy.matmul(a, a), a)))
            props = cupy.cuda.runtime.getDeviceProperties(index)
    except Exception as exc:
        return failed(exc, "the CUDA device does not work")
    if got != expected:
        return GpuProbe(
            False,
            f"the GPU computed a wrong test result ({got} instead of {expected})",
            "check the driver and the CuPy wheel's CUDA version",
            cupy_version=version,
            index=index,
        )
    name = props.get("name", b"")
    return GpuProbe(
        True,
        device_name=name.decode() if isinstance(name, bytes) else str(name),
        cupy_version=version,
        index=index,
        memory_bytes=int(props.get("totalGlobalMem", 0)),
        compute_capability=f"{props.get('major', '?')}.{props.get('minor', '?')}",
        device_count=count,
    )


# (what the text says, the library it names, the fix): the first match wins
_LIBRARIES = [
    (r"libcublas|cublas", "cuBLAS (libcublas)", INSTALL_FIX),
    (r"libnvrtc|nvrtc", "NVRTC, the CUDA runtime compiler (libnvrtc)", INSTALL_FIX),
    (r"libcurand", "cuRAND (libcurand)", INSTALL_FIX),
    (r"libcudart", "the CUDA runtime (libcudart)", INSTALL_FIX),
]
_DRIVER = (
    r"InsufficientDriver|driver version is insufficient|libcuda\.so|NoDevice|"
    r"no CUDA-capable device|cudaErrorInitializationError"
)


def diagnose(exc: BaseException) -> tuple[str, str] | None:
    """``(reason, fix)`` for a failure of the CUDA stack, or None when it is not one.

    Recognised by content: a missing CUDA library (cuBLAS, NVRTC, cuRAND, the runtime)
    from CuPy, its library loader or the dynamic linker; a missing or too old NVIDIA
    driver; GPU out of memory; any other error raised from a ``cupy`` module.
    """
    cls = type(exc)
    module = cls.__module__ or ""
    text = f"{cls.__name__}: {exc}"
    gpu_module = module.startswith(("cupy", "cuda"))
    if "OutOfMemory" in cls.__name__ and gpu_module:
        return (
            f"the GPU ran out of memory ({first_line(exc)})",
            "try a smaller --batch-size, a smaller network, or --device cpu",
        )
    if re.search(_DRIVER, text):
        return (
            f"the NVIDIA driver is missing, or older than CuPy's CUDA runtime ({first_line(exc)})",
            "install or update the NVIDIA driver (nvidia-smi shows the CUDA version it "
            "supports), or install the CuPy wheel for that version: pip install '.[gpu]' "
            "(CUDA 12) or '.[gpu-cuda13]' (CUDA 13)",
        )
    loader = isinstance(exc, (ImportError, OSError)) or "pathfinder" in module
    if loader or gpu_module or "cannot open shared object" in text or "Failure finding" in text:
        for pattern, library, fix in _LIBRARIES:
            if re.search(pattern, text, re.IGNORECASE):
                return f"the CUDA library {library} could not be loaded ({first_line(exc)})", fix
    if gpu_module:
        return f"GPU error: {first_line(exc)}", "try --device cpu"
    return None


_CREATORS = ("arange", "empty", "zeros", "ones", "full", "linspace", "eye") + tuple(
    f"{n}_like" for n in ("empty", "zeros", "ones", "full")
)


def _without_device(fn):
    def create(*args, device=None, **kwargs):
        return fn(*args, **kwargs)

    return create


def cupy_namespace(cupy):
    """CuPy as a standard Array API namespace.

    ``array_api_compat.cupy`` (installed by the ``gpu`` extra) fills the gaps
    between CuPy's NumPy-style API and the standard; without it, the few
    standard names the shared math uses are added to a thin proxy of CuPy.
    """
    try:
        return importlib.import_module("array_api_compat.cupy")
    except ImportError:
        pass
    ns = types.ModuleType("cupy_array_api")
    ns.__dict__.update({k: getattr(cupy, k) for k in dir(cupy) if not k.startswith("__")})
    for name in _CREATORS:  # the current device places them: drop the standard's device=
        if hasattr(cupy, name):
            setattr(ns, name, _without_device(getattr(cupy, name)))
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
