"""Weight initialisation, drawn on the host so every device starts identically.

Randomness lives on the host: one :class:`numpy.random.Generator` per run draws
the initial weights, which are then moved to the training device. The same seed
gives the same starting point on NumPy, CuPy and array-api-strict. Biases start
at zero, as in the course notes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["xavier_uniform"]


def xavier_uniform(
    rng: np.random.Generator,
    fan_in: int,
    fan_out: int,
    dtype="float32",
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Glorot/Xavier uniform weights on ``(-r, r)``, ``r = sqrt(6 / (fan_in + fan_out))``.

    Returns a host array of ``shape`` (default ``(fan_in, fan_out)``).
    """
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    shape = (fan_in, fan_out) if shape is None else shape
    return rng.uniform(-limit, limit, size=shape).astype(dtype)
