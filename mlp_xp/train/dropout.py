"""Inverted dropout's masks for a batch, made on the device from counters: the same
bits on every backend, whatever the batch order or split (:mod:`mlp_xp.train.plan`)."""

from __future__ import annotations

from .. import functional as F
from ..arrays import Array

__all__ = ["dropout_masks"]


def dropout_masks(model, samples: Array, key: int, rate: float) -> list:
    """Inverted-dropout masks for the hidden layers of a batch, made on the device.

    ``samples`` holds the batch rows' dataset indices (a device integer array);
    each mask is (n, units) of 0 (dropped, probability ``rate``) or 1/(1-rate), so
    expected activations are unchanged and evaluation needs no rescaling. Unit
    ``j`` of hidden layer ``l`` of sample ``i`` is kept or dropped by the hash of
    ``(i, l, j)`` and ``key`` (:func:`~mlp_xp.functional.dropout_mask`): the same
    on every backend, whatever the batch order or split.
    """
    xp, total = model.xp, sum(h.units for h in model.hidden)
    with model.backend.scope():
        hashed = model.backend.dtype(model.backend.hash_dtype)
        units = xp.arange(total, dtype=hashed, device=samples.device)
        rows = xp.reshape(xp.astype(samples, hashed), (-1, 1))
        counters = F.unit_counters(rows, xp.reshape(units, (1, -1)), total)
        mask = F.dropout_mask(xp, counters, key, rate, model.backend.dtype(model.dtype))
    out, start = [], 0
    for h in model.hidden:
        out.append(mask[:, start : start + h.units])
        start += h.units
    return out
