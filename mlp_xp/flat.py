"""Parameters, gradients and optimizer state as views of one flat buffer.

A network's arrays ``W1, b1, W2, b2, ...`` live in one 1-D device buffer, the weight
matrices first and the biases after them, and each name is a view of its stretch. So a
whole-model operation is one operation on one array: an optimizer's update, the L2 term
``lambda W`` (on the leading ``n_weights`` entries only), a snapshot, and -- for data
parallelism -- one allreduce of the gradient.
"""

from __future__ import annotations

import math
from typing import TypeGuard

import numpy as np

__all__ = ["Layout", "FlatParams"]


class Layout:
    """Where each named array sits in the flat buffer: weights (``W...``) first, in order.

    Parameters
    ----------
    shapes : dict
        ``{"W1": (784, 300), "b1": (300,), ...}`` in the network's order.
    """

    def __init__(self, shapes: dict):
        self.names = list(shapes)
        ordered = [k for k in shapes if k.startswith("W")] + [
            k for k in shapes if not k.startswith("W")
        ]
        self.slots: dict[str, tuple[int, int, tuple]] = {}
        start = 0
        for name in ordered:
            shape = tuple(int(d) for d in shapes[name])
            stop = start + math.prod(shape)
            self.slots[name] = (start, stop, shape)
            start = stop
        self.size = start
        self.n_weights = sum(b - a for k, (a, b, _) in self.slots.items() if k.startswith("W"))

    def __eq__(self, other) -> bool:
        return isinstance(other, Layout) and other.slots == self.slots

    def __hash__(self) -> int:
        return hash(tuple(self.slots.items()))

    def views(self, xp, flat) -> FlatParams:
        """Named views of ``flat`` (a 1-D array of :attr:`size`)."""
        out = FlatParams(self, flat)
        for name in self.names:
            start, stop, shape = self.slots[name]
            out[name] = xp.reshape(flat[start:stop], shape)
        return out

    def pack(self, xp, arrays: dict) -> FlatParams:
        """One new flat buffer holding ``arrays`` (one concatenation), with its views."""
        ordered = sorted(self.names, key=lambda k: self.slots[k][0])
        return self.views(xp, xp.concat([xp.reshape(arrays[k], (-1,)) for k in ordered], axis=0))

    def pack_host(self, arrays: dict, dtype):
        """The same on the host, with NumPy (to move a whole network with one copy)."""
        flat = np.empty(self.size, dtype=dtype)
        for name, (start, stop, _) in self.slots.items():
            flat[start:stop] = np.reshape(arrays[name], -1)
        return flat


class FlatParams(dict):
    """A dict of named views (``W1``, ``b1``, ...) that also holds their flat ``buffer``."""

    def __init__(self, layout: Layout, buffer):
        super().__init__()
        self.layout = layout
        self.buffer = buffer

    @property
    def weights(self):
        """The weight matrices' stretch of the buffer (what L2 applies to)."""
        return self.buffer[: self.layout.n_weights]

    def same_layout(self, other: object) -> TypeGuard[FlatParams]:
        return isinstance(other, FlatParams) and other.layout == self.layout
