"""Array backends: which array module (``xp``) the math runs on, and where.

The front door (Chainer's shape): :func:`get_backend` chooses, :func:`device` makes a
device the default inside a block, :func:`available_backends` lists what this process
finds. The base class is in ``_base``; one module per library (``numpy``, ``cupy``,
``strict``, ``torch``); only ``cupy`` imports CuPy and only ``torch`` PyTorch, lazily:
``import mlp_xp`` loads neither.

A :class:`Backend` owns the array module ``xp``, the host->device and
device->host transfers, ``synchronize()`` for honest timing, and a memory
reading. Four exist:

``numpy``            the CPU (always available)
``cupy``             one CUDA GPU through CuPy (``pip install .[gpu]``): ``gpu`` is
                     GPU 0, ``gpu:N`` (or ``cuda:N``) GPU N
``torch``            one PyTorch device (``pip install '.[torch]'``): ``torch`` is its
                     best, ``torch:cpu``, ``torch:cuda:N`` (NVIDIA, or AMD on ROCm builds),
                     ``mps`` (Apple GPU), ``xpu:N`` (Intel GPU)
``array_api_strict`` the Array API reference namespace, on the CPU; used by the
                     tests to prove the math touches nothing NumPy-only (and, on its
                     simulated devices, that it creates every array on its device)

CuPy makes new arrays on the *current* device, so a backend's device is made current
around the work done on it: ``with backend.scope():`` (the model, the optimizers and the
training loop enter it themselves). Nothing lands on GPU 0 when GPU 1 was asked for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..devices import GpuProbe, parse_device
from ..errors import DeviceError
from ..scope import scoped_device, scoped_to
from ._base import Backend, array_kind
from .cupy import CupyBackend, device_error_for, gpu_count, gpu_probe, make_current
from .numpy import NumpyBackend
from .torch import (
    LABELS,
    TorchBackend,
    not_built_for,
    torch_backend,
    torch_build,
    torch_devices,
    torch_probe,
)

__all__ = [
    "Backend",
    "NumpyBackend",
    "CupyBackend",
    "TorchBackend",
    "GpuProbe",
    "get_backend",
    "gpu_probe",
    "gpu_count",
    "make_current",
    "device_error_for",
    "device",
    "array_kind",
    "gpu_devices",
    "available_backends",
]

ENV_VAR = "MLP_XP_DEVICE"


def get_backend(spec: str | Backend | None = None) -> Backend:
    """Choose the array backend.

    Parameters
    ----------
    spec : str or Backend, optional
        ``"auto"``, ``"cpu"``, ``"gpu"``, ``"gpu:N"``, ``"cuda:N"`` (CuPy), ``"torch"``,
        ``"torch:cpu"``, ``"torch:cuda:N"``, ``"mps"``, ``"xpu:N"`` (PyTorch) or
        ``"array-api-strict"``. ``None`` and ``auto`` are the device of the innermost
        ``with mlp_xp.device(...)`` block (:func:`mlp_xp.device`) where there is one.
        Otherwise ``None`` is the ``MLP_XP_DEVICE`` environment variable, else ``auto``,
        which picks the first that passes its probe of: CuPy on GPU 0, a PyTorch CUDA/ROCm
        GPU, MPS, XPU, else NumPy on the CPU, and says in ``backend.note`` why the ones
        before it were passed over. ``gpu`` is ``gpu:0``; a named device that is not usable
        raises :class:`~mlp_xp.errors.DeviceError` naming the reason and the fix.

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
    if device.kind == "torch":
        return torch_backend(device.name, device.index)
    probe = gpu_probe(device.index)
    if device.kind == "gpu":
        if not probe.ok:
            name = f"GPU {device.index}" if device.index else "GPU"
            raise DeviceError(f"no usable {name}: {probe.reason}; {probe.fix}, or use --device cpu")
        return CupyBackend(probe)
    return _auto(probe)


def _auto(cupy_probe: GpuProbe) -> Backend:
    """``auto``: CuPy's GPU 0, PyTorch's CUDA/ROCm GPU 0, MPS, XPU 0, else NumPy; the note
    says why each before the chosen one was passed over."""
    if cupy_probe.ok:
        return CupyBackend(cupy_probe)
    passed = [f"CuPy GPU ({cupy_probe.reason})"]
    build = torch_build()
    for kind in ("cuda", "mps", "xpu"):
        reason = not_built_for(kind, build)
        if not reason:
            probe = torch_probe(kind)
            if probe.ok:
                return TorchBackend(probe, note=f"auto: passed over {'; '.join(passed)}")
            reason = probe.reason
        passed.append(f"{LABELS[kind]} ({reason})")
    return NumpyBackend(note=f"auto: passed over {'; '.join(passed)}, so the CPU is used")


@contextlib.contextmanager
def device(spec: str | Backend) -> Iterator[Backend]:
    """Make ``spec`` the default device inside a ``with`` block; yields its backend.

    ``spec`` is anything :func:`~mlp_xp.get_backend` accepts (``"cpu"``, ``"gpu"``,
    ``"gpu:1"``, ``"auto"``, a :class:`~mlp_xp.Backend`). It is looked up when the block
    starts, so an unusable GPU fails there with :class:`~mlp_xp.errors.DeviceError`.

    Examples
    --------
    >>> import mlp_xp
    >>> with mlp_xp.device("cpu"):
    ...     model = mlp_xp.MLP(4, (3,), 2)
    >>> model.device
    'cpu'
    """
    backend = get_backend(spec)
    with scoped_to(backend):
        yield backend


def gpu_devices() -> list[dict]:
    """Every visible GPU: index, name, memory, compute capability, and whether it works."""
    first = gpu_probe(0)
    count = first.device_count
    if not first.ok and count == 0:
        return []
    rows = []
    for index in range(count):
        probe = gpu_probe(index)
        rows.append(
            {
                "backend": "cupy",
                "kind": "gpu",
                "device": f"gpu:{index}",
                "name": probe.device_name,
                "memory_bytes": probe.memory_bytes,
                "compute_capability": probe.compute_capability,
                "available": probe.ok,
                "reason": "" if probe.ok else f"{probe.reason}; {probe.fix}",
            }
        )
    return rows


def available_backends() -> list[dict]:
    """Every backend and device this process finds (NumPy's CPU, each CuPy GPU, each PyTorch
    device), with its probe's verdict and, where it is not usable, why and the fix."""
    rows = [dict(NumpyBackend().describe(), available=True, reason="")]
    gpus = gpu_devices()
    if gpus:
        rows.extend(gpus)
    else:
        probe = gpu_probe(0)
        rows.append(
            {
                "backend": "cupy",
                "kind": "gpu",
                "device": "",
                "available": False,
                "reason": f"{probe.reason}; {probe.fix}",
            }
        )
    return rows + torch_devices()
