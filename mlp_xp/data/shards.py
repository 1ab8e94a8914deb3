"""Image sets read a rows at a time: memory-mapped shards seen as one array, and subsets.

:func:`~mlp_xp.data.load_digits` with ``mapped=True`` returns the images as a
:class:`Shards` (indexable like an (N, H*W) uint8 array); a :class:`Subset` is the rows of
a split that a streamed run reads, each only when indexed.
"""

from __future__ import annotations

from typing import cast

import numpy as np

__all__ = ["Shards", "Subset", "as_images", "READ_ROWS"]


#: Rows read from a memory map at a time (3 MB of 28x28 digits): the only temporary.
READ_ROWS = 4096


class Shards:
    """Several (N_i, H, W) uint8 image arrays (memory maps) seen as one (N, H*W) array.

    Indexing with a slice or an index array reads only the rows asked for.
    """

    def __init__(self, parts: list):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.width = int(np.prod(parts[0].shape[1:]))
        self.shape = (int(self.starts[-1]), self.width)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.shape[0], self.width), dtype=np.uint8)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for i in np.unique(part):
            where = np.flatnonzero(part == i)
            local = rows[where] - self.starts[i]
            order = np.argsort(local, kind="stable")  # read each file front to back
            for lo in range(0, order.shape[0], READ_ROWS):  # bounded temporaries
                chunk = order[lo : lo + READ_ROWS]
                out[where[chunk]] = np.reshape(self.parts[i][local[chunk]], (-1, self.width))
        return out


class Subset:
    """Rows ``index`` of ``array`` (a :class:`Shards`), read only when indexed."""

    def __init__(self, array, index):
        self.array, self.index = array, np.asarray(index, dtype=np.int64)
        self.shape = (self.index.shape[0], array.shape[1])
        self.dtype = array.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        return self.array[self.index[rows]]


def as_images(shards: Shards) -> np.ndarray:
    """``shards`` where :class:`~mlp_xp.data.Digits` holds an image array: it is indexed
    like one (rows, ``len``, ``shape``, ``dtype``), which is all the training reads."""
    return cast(np.ndarray, shards)
