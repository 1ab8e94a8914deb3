"""The PyTorch backend: ``torch.Tensor``\\ s through ``array_api_compat.torch``, on PyTorch's
CPU, a CUDA or ROCm GPU (``torch:cuda:N``), an Apple GPU (``mps``) or an Intel GPU (``xpu:N``).

The only module that imports PyTorch, lazily: ``import mlp_xp`` never loads it, and
``--device auto`` reads which GPUs the installed PyTorch build was made for (its
``torch/version.py``) before importing it, so a CPU wheel costs ``auto`` nothing. No
autograd and no ``torch.nn``: the same hand-written math as on NumPy and CuPy runs on the
tensors (PyTorch's autograd is off inside :meth:`TorchBackend.scope`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import Location
from ..errors import DeviceError, first_line
from ._base import Backend, cpu_label

__all__ = [
    "TorchBackend",
    "TorchProbe",
    "torch_probe",
    "torch_build",
    "torch_devices",
    "torch_backend",
    "not_built_for",
    "TORCH_FIX",
    "LABELS",
]

#: How to get PyTorch and the array-api-compat wrapper the math runs through.
TORCH_FIX = (
    "install PyTorch: pip install '.[torch]' in the package's folder (pytorch.org lists GPU builds)"
)
#: What each PyTorch device type is, in messages.
LABELS = {"cpu": "PyTorch CPU", "cuda": "PyTorch CUDA/ROCm GPU", "mps": "MPS", "xpu": "XPU"}
_BUILD_FIX = {
    "cuda": "install a CUDA or ROCm build of PyTorch (pytorch.org/get-started), or use "
    "--device gpu (CuPy) or cpu",
    "mps": "MPS needs an Apple-silicon Mac with macOS 12.3 or later: there, install PyTorch "
    "(pip install '.[torch]' in the package's folder)",
    "xpu": "install PyTorch's XPU build and Intel's GPU driver (pytorch.org/get-started)",
}


@dataclass(frozen=True)
class TorchProbe:
    """Outcome of looking for a usable PyTorch device ``device`` (``"cpu"``, ``"cuda:0"``,
    ``"mps"``, ``"xpu:1"``): ``ok`` only when PyTorch and array-api-compat import, the device
    is there, and a matrix product and an elementwise kernel on it give the right numbers."""

    ok: bool
    device: str
    reason: str = ""
    fix: str = ""
    device_name: str = ""
    torch_version: str = ""
    count: int = 0  # devices of this type PyTorch sees


def torch_build() -> dict | None:
    """The installed PyTorch's ``version`` module as a dict (``cuda``, ``hip``, ``xpu``,
    ``__version__``), read from the file without importing PyTorch; None when not installed."""
    loaded = sys.modules.get("torch")
    if loaded is not None and hasattr(loaded, "version"):
        return {k: getattr(loaded.version, k, None) for k in ("__version__", "cuda", "hip", "xpu")}
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        version = Path(next(iter(spec.submodule_search_locations))) / "version.py"
        text = version.read_text(encoding="utf-8")
    except OSError:
        return {}  # installed, but its build is unknown: the probe imports it to find out
    found = dict(re.findall(r"^(__version__|cuda|hip|xpu)\b[^=]*=\s*'([^']*)'", text, re.M))
    return {k: found.get(k) for k in ("__version__", "cuda", "hip", "xpu")}


def not_built_for(kind: str, build: dict | None) -> str:
    """Why the installed PyTorch cannot have a device of ``kind`` (without importing it);
    ``""`` when it may."""
    if build is None:
        return "PyTorch is not installed"
    version = build.get("__version__") or "?"
    if kind == "cuda" and build and not (build.get("cuda") or build.get("hip")):
        return f"this PyTorch build ({version}) has no CUDA or ROCm support"
    if kind == "xpu" and build and not build.get("xpu"):
        return f"this PyTorch build ({version}) has no XPU support"
    if kind == "mps" and sys.platform != "darwin":
        return "MPS exists only on macOS"
    return ""


def _import() -> tuple[Any, TorchProbe | None]:
    """PyTorch, or a failed probe saying what is missing."""
    for module in ("torch", "array_api_compat.torch"):
        try:
            loaded = importlib.import_module(module)
        except Exception as exc:  # ImportError, or a broken library at import
            what = "PyTorch" if module == "torch" else "array-api-compat"
            missing = isinstance(exc, ModuleNotFoundError) and module.startswith(str(exc.name))
            reason = f"{what} is not installed" if missing else (
                f"{what} failed to import ({first_line(exc)})"
            )  # fmt: skip
            return None, TorchProbe(False, "", reason, TORCH_FIX)
        if module == "torch":
            torch = loaded
    return torch, None


def _available(torch: Any, kind: str) -> tuple[int, str]:
    """How many devices of ``kind`` PyTorch sees, or 0 and why none."""
    if kind == "cpu":
        return 1, ""
    if kind == "mps":
        if not torch.backends.mps.is_built():
            return 0, "this PyTorch build has no MPS support"
        return (1, "") if torch.backends.mps.is_available() else (0, "MPS is not available")
    module = getattr(torch, kind, None)
    if module is None or not module.is_available():
        name = "CUDA or ROCm GPU" if kind == "cuda" else "XPU device"
        return 0, f"PyTorch sees no {name}"
    return int(module.device_count()), ""


def _device_name(torch: Any, kind: str, index: int) -> str:
    if kind == "cpu":
        return cpu_label()
    if kind == "mps":
        return "Apple GPU"
    name = str(getattr(torch, kind).get_device_name(index))
    hip = getattr(torch.version, "hip", None)
    return f"{name}, ROCm {hip}" if kind == "cuda" and hip else name


@functools.cache
def torch_probe(kind: str, index: int = 0) -> TorchProbe:
    """Probe PyTorch device ``kind`` (cpu, cuda, mps, xpu) number ``index``, once per process:
    a matrix product and an elementwise kernel on the device, checked on the host."""
    torch, failed = _import()
    if failed is not None:
        return TorchProbe(False, _name(kind, index), failed.reason, failed.fix)
    version = str(torch.__version__)
    device = _name(kind, index)

    def refused(reason: str, fix: str, count: int = 0) -> TorchProbe:
        return TorchProbe(False, device, reason, fix, torch_version=version, count=count)

    count, why = _available(torch, kind)
    if not count:
        return refused(why, _BUILD_FIX[kind])
    if index >= count:
        return refused(
            f"there is no {kind} device {index}: PyTorch sees {count} ({kind}:0 to "
            f"{kind}:{count - 1})", "choose one of those", count,
        )  # fmt: skip
    host = np.arange(16, dtype=np.float32).reshape(4, 4)
    expected = float((host @ host * 2.0 + host).sum())
    try:
        got = run_probe(torch, device, host)
    except Exception as exc:
        return refused(f"the {device} device does not work ({first_line(exc)})", _BUILD_FIX.get(
            kind, "check the PyTorch installation"), count)  # fmt: skip
    if got != expected:
        return refused(
            f"the {device} device computed a wrong test result ({got} instead of {expected})",
            "check the driver and the PyTorch build",
            count,
        )
    name = _device_name(torch, kind, index)
    return TorchProbe(True, device, device_name=name, torch_version=version, count=count)


def run_probe(torch: Any, device: str, host: np.ndarray) -> float:
    """The probe's work on ``device``: a matrix product and an elementwise kernel, summed."""
    a = torch.asarray(host, device=device)
    return float(torch.sum(torch.matmul(a, a) * 2.0 + a).cpu())


def spec_of(device: str) -> str:
    """The name ``--device`` takes for PyTorch device ``device``: ``torch:cuda:0``, ``mps``."""
    if device.startswith("mps"):
        return "mps"
    return f"torch:{device}" if device else "torch"


def _name(kind: str, index: int) -> str:
    return f"{kind}:{index}" if kind in ("cuda", "xpu") else kind


def best_probe() -> TorchProbe:
    """PyTorch's best device: the first working CUDA/ROCm GPU, MPS, XPU, else its CPU."""
    build = torch_build()
    for kind in ("cuda", "mps", "xpu"):
        if not not_built_for(kind, build):
            probe = torch_probe(kind)
            if probe.ok:
                return probe
    return torch_probe("cpu")


def torch_devices() -> list[dict]:
    """A row per PyTorch device type (per device for CUDA/ROCm and XPU), with its probe's
    verdict, as ``mlp-xp devices`` lists them."""
    build, rows = torch_build(), []
    for kind in ("cpu", "cuda", "mps", "xpu"):
        reason = "" if kind == "cpu" else not_built_for(kind, build)
        probes = [] if reason else [torch_probe(kind)]
        if probes and probes[0].count > 1:
            probes += [torch_probe(kind, i) for i in range(1, probes[0].count)]
        for probe in probes or [TorchProbe(False, "", reason, _fix(kind, build))]:
            spec = spec_of(probe.device or kind) if probe.device or kind == "mps" else ""
            rows.append({
                "backend": "torch", "kind": "cpu" if kind == "cpu" else "gpu", "device": spec,
                "type": LABELS[kind], "name": probe.device_name, "available": probe.ok,
                "reason": "" if probe.ok else f"{probe.reason}; {probe.fix}",
            })  # fmt: skip
        if build is None:
            break  # one row says PyTorch is not installed
    return rows


def _fix(kind: str, build: dict | None) -> str:
    return TORCH_FIX if build is None else _BUILD_FIX.get(kind, TORCH_FIX)


class TorchBackend(Backend):
    """One PyTorch device; tensors through ``array_api_compat.torch``, autograd off."""

    name = "torch"
    hash_dtype = "int64"  # PyTorch has no shifts on uint32 (see mlp_xp.functional.mix32)

    def __init__(self, probe: TorchProbe, note: str = ""):
        if not probe.ok:
            raise DeviceError(f"no usable {spec_of(probe.device)}: {probe.reason}; {probe.fix}")
        self.torch = importlib.import_module("torch")
        # a tensor on the Apple GPU says mps:0, and devices compare with their index
        self.array_device = self.torch.device("mps:0" if probe.device == "mps" else probe.device)
        self.kind = "cpu" if self.array_device.type == "cpu" else "gpu"
        label = f"{probe.device} ({probe.device_name}, PyTorch {probe.torch_version})"
        super().__init__(importlib.import_module("array_api_compat.torch"), label, note)

    @property
    def key(self) -> tuple:
        return (self.name, str(self.array_device))

    @property
    def spec(self) -> str:
        return spec_of(str(self.array_device))  # torch:cpu, torch:cuda:0, mps

    def __str__(self) -> str:
        return f"torch ({self.array_device})"

    def scope(self) -> contextlib.AbstractContextManager:
        """No autograd; on a GPU, new tensors default to this device (CuPy's current device)."""
        if self.kind == "cpu":
            return self.torch.no_grad()
        return _on(self.torch, self.array_device)

    def dtype(self, name: Any) -> Any:
        dtype = super().dtype(name)
        if dtype == self.torch.float64 and self.array_device.type == "mps":
            raise DeviceError(
                "MPS has no float64: use --dtype float32 (dtype='float32') and float32 inputs"
            )
        return dtype

    def _put(self, a: Any, dtype: Any) -> Any:
        a = self.accept(a, "data")
        if isinstance(a, np.ndarray):
            if dtype is None and a.dtype == np.float64:
                self.dtype("float64")  # refused on MPS
            if not a.flags.writeable:  # PyTorch warns on read-only memory: copy it once
                a = np.array(a)
        return self.xp.asarray(a, dtype=dtype, device=self.array_device)

    def _take(self, x: Any, where: Location) -> Any:
        """A tensor over another library's GPU memory (CuPy, JAX) on this CUDA device."""
        if where.kind != "gpu" or self.array_device.type != "cuda":
            return None
        if where.index != (self.array_device.index or 0):
            return None
        return self.torch.from_dlpack(x)

    def _get(self, a: Any) -> np.ndarray:
        if not isinstance(a, self.torch.Tensor):
            return np.asarray(a)
        return a.detach().cpu().numpy()

    def synchronize(self) -> None:
        kind = self.array_device.type
        if kind != "cpu":
            getattr(self.torch, kind).synchronize()

    def memory_info(self) -> dict:
        info = super().memory_info()
        if self.array_device.type == "cuda":
            cuda = self.torch.cuda
            info.update(
                gpu_pool_used_bytes=int(cuda.memory_allocated(self.array_device)),
                gpu_pool_total_bytes=int(cuda.memory_reserved(self.array_device)),
            )
        return info

    def free_device_bytes(self) -> int | None:
        if self.array_device.type != "cuda":
            return None  # the CPU; MPS shares the host's memory
        cuda, device = self.torch.cuda, self.array_device
        free, _ = cuda.mem_get_info(device)
        # plus what PyTorch's caching allocator holds unused (as CuPy's pool is counted)
        return int(free) + int(cuda.memory_reserved(device)) - int(cuda.memory_allocated(device))

    def owns(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor) and x.device == self.array_device


@contextlib.contextmanager
def _on(torch: Any, device: Any) -> Any:
    with torch.no_grad(), device:
        yield


def torch_backend(kind: str, index: int = 0, note: str = "") -> TorchBackend:
    """The backend of PyTorch device ``kind`` (``""`` = its best) number ``index``; an
    unusable one is a :class:`~mlp_xp.errors.DeviceError` naming what is missing and the fix."""
    probe = best_probe() if not kind else torch_probe(kind, index)
    return TorchBackend(probe, note)
