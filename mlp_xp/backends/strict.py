"""The array-api-strict backend: the Array API reference namespace, on the CPU.

The tests run every piece of math on it to prove that the math touches nothing
NumPy-only, and (on its simulated devices) that it creates every array on its device.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ..errors import DeviceError
from ._base import Backend, cpu_label

__all__ = ["StrictBackend"]


class StrictBackend(Backend):
    """The Array API reference implementation; proves the math is portable.

    ``device`` names one of its simulated devices (``"device1"``, ``"device2"``); arrays
    of different devices refuse to meet, so the math must pass ``device=`` wherever it
    creates an array.
    """

    name = "array_api_strict"
    kind = "cpu"

    def __init__(self, device: str = ""):
        xp = importlib.import_module("array_api_strict")
        info = xp.__array_namespace_info__()
        devices = {str(d).split("'")[1]: d for d in info.devices()} if device else {}
        if device and device not in devices:
            raise DeviceError(
                f"array-api-strict has no device {device!r}: choose from {', '.join(devices)}"
            )
        self.array_device = devices[device] if device else info.default_device()
        label = f", {device}" if device else ""
        super().__init__(xp, f"cpu ({cpu_label()}), array-api-strict{label}")

    @property
    def key(self) -> tuple:
        return (self.name, str(self.array_device))

    @property
    def spec(self) -> str:
        name = str(self.array_device).split("'")[1] if "'" in str(self.array_device) else ""
        default = self.array_device == self.xp.__array_namespace_info__().default_device()
        return "array-api-strict" if default else f"array-api-strict:{name}"

    def _put(self, a: Any, dtype: Any) -> Any:
        if self.owns(a):
            return a if dtype is None or a.dtype == dtype else self.xp.astype(a, dtype)
        a = self.accept(a, "data")  # refuses another library's or device's array
        if isinstance(a, np.ndarray) and a.dtype.kind in "biuf":
            a = np.asarray(a, order="C")  # keeps 0-d arrays 0-d (ascontiguousarray does not)
        return self.xp.asarray(a, dtype=dtype, device=self.array_device)

    def _get(self, a: Any) -> np.ndarray:
        if not self.owns(a):
            return np.asarray(a)
        return np.from_dlpack(
            self.xp.asarray(a, device=self.xp.__array_namespace_info__().default_device())
        )

    def owns(self, x: Any) -> bool:
        return type(x).__module__.startswith("array_api_strict") and x.device == self.array_device
