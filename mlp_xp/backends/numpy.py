"""The NumPy backend: the CPU, always available."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Backend, cpu_label

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    name = "numpy"
    kind = "cpu"
    writes_out = True

    def __init__(self, note: str = ""):
        super().__init__(np, f"cpu ({cpu_label()})", note)

    def owns(self, x: Any) -> bool:
        # NumPy's reductions return scalars (np.generic): its 0-d arrays
        return isinstance(x, (np.ndarray, np.generic))
