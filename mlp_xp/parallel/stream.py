"""Training sets larger than a device, or than memory.

- On the device the training images stay **uint8**, the pixels themselves (4x less than
  float32); each batch is scaled as it is gathered (``Trainer(pixels=...)``).
- Uncompressed IDX files are read by memory map (:func:`~mlp_xp.data.idx.map_idx`), and a
  folder may hold several shards (``train-00-images-idx3-ubyte``,
  ``train-00-labels-idx1-ubyte``, ...): :class:`Shards` joins them without copying.
- With ``--stream`` the images never move to the device as a whole: each step reads its
  rows (a rank only those of its share) from the memory maps and sends them as one uint8
  host-to-device copy (:class:`StreamedStep`), so a set larger than RAM trains a batch
  at a time.
- :func:`data_bytes` is what ``mlp-xp train`` prints before it starts, and
  :func:`check_fits` refuses, in one line naming the size and ``--stream``, a set that
  cannot fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import numpy as np

from ..data.digits import EMBEDDED, Digits, load_digits
from ..data.idx import map_idx
from ..errors import DataError
from .trainer import ShardedStep

__all__ = [
    "Shards",
    "Subset",
    "open_digits",
    "StreamedStep",
    "data_bytes",
    "check_fits",
    "report_and_check",
]


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


def open_digits(source, image_shape: tuple[int, int] | None = None) -> Digits:
    """The training split of ``source``; uncompressed IDX files memory-mapped, shards joined.

    ``image_shape``: refuse images of another size (as :func:`~mlp_xp.data.load_digits`).

    ``images`` is a :class:`Shards` (indexable like an (N, H*W) uint8 array); labels are
    read into memory (one byte per sample on disk, 8 here).
    """
    if str(source) == EMBEDDED:
        digits = load_digits(source, "train", image_shape=image_shape)
        return Digits(_as_images(Shards([digits.images])), digits.labels, digits.source)
    folder = Path(source)
    if not folder.is_dir():
        return load_digits(source, "train", image_shape=image_shape)  # its one-line error
    images = sorted(p for p in folder.glob("train*images-idx3-ubyte*") if p.is_file())
    if not images:
        return load_digits(source, "train", image_shape=image_shape)
    parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    for path in images:
        twin = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        if not twin.is_file():
            raise DataError(f"{path}: no labels beside it (expected {twin.name})")
        part, part_labels = map_idx(path), map_idx(twin)
        if part.dtype != np.uint8:
            raise DataError(f"{path}: expected uint8 pixels, got {part.dtype}")
        if part.ndim != 3 or len(part) != len(part_labels):
            raise DataError(f"{path}: {part.shape} images but {part_labels.shape} labels")
        if parts and part.shape[1:] != parts[0].shape[1:]:
            raise DataError(f"{path}: images of {part.shape[1:]}, the first shard's are "
                            f"{parts[0].shape[1:]}")  # fmt: skip
        parts.append(part)
        label_parts.append(np.asarray(part_labels, dtype=np.int64))
    labels = np.concatenate(label_parts)
    if image_shape is not None and parts[0].shape[1:] != tuple(image_shape):
        raise DataError(
            f"{folder}: images are {parts[0].shape[1]}x{parts[0].shape[2]} pixels; "
            f"the network takes {image_shape[0]}x{image_shape[1]}"
        )
    if labels.size == 0 or labels.min() < 0 or labels.max() >= 10:
        raise DataError(f"{folder}: labels must be in 0..9 and the set not empty")
    return Digits(_as_images(Shards(parts)), labels, str(source))


def _as_images(shards: Shards) -> np.ndarray:
    """``shards`` where :class:`~mlp_xp.data.Digits` holds an image array: it is indexed
    like one (rows, ``len``, ``shape``, ``dtype``), which is all the training reads."""
    return cast(np.ndarray, shards)


class StreamedStep(ShardedStep):
    """The data-parallel step reading its rows from host memory maps, one copy per step."""

    name = "generic (streamed)"

    def __init__(self, world, model, optimizer, source, T, *args, **kwargs):
        super().__init__(world, model, optimizer, None, T, *args, **kwargs)
        self.source = source  # host (N, H*W) uint8, e.g. a Subset of Shards

    def _gather(self, samples, rows: slice, slot: int = 0):
        # the same rows as ``samples``, read on the host
        return self.backend.put(self.source[self.plan.order[rows]])


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


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def data_bytes(n: int, width: int, n_outputs: int, batch: int, stream: bool) -> dict:
    """What the training data takes on the device (bytes): images, targets, epoch plan."""
    images = batch * width if stream else n * width  # uint8
    return {
        "images": images,
        "float32 images": n * width * 4,
        "targets": n * n_outputs * 4,
        "plan": n * 8,
        "total": images + n * n_outputs * 4 + n * 8,
    }


def available_bytes(backend) -> tuple[int | None, str]:
    """Memory a training set may take on ``backend``'s device, and what limits it."""
    if backend.kind == "gpu":
        free, _ = backend.cupy.cuda.runtime.memGetInfo()
        return int(free), f"free on {backend.device}"
    limits = []
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append((soft - used, "left under this process's address-space limit"))
    except (ImportError, OSError, ValueError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    limits.append((int(line.split()[1]) * 1024, "of host memory available"))
    except OSError:
        pass
    return min(limits) if limits else (None, "")


def report_and_check(log, n: int, n_outputs: int, batch: int, backend, stream: bool) -> None:
    """Print what the data takes on the device; refuse (one line) when it cannot fit."""
    sizes = data_bytes(n, 784, n_outputs, batch, stream)
    images = (
        f"a batch of uint8 images at a time ({megabytes(sizes['images'])}), streamed"
        if stream
        else f"uint8 images {megabytes(sizes['images'])}"
    )
    print(
        f"data on the device: {megabytes(sizes['total'])} ({images}, targets "
        f"{megabytes(sizes['targets'])}; the images as float32 would be "
        f"{megabytes(sizes['float32 images'])})",
        file=log,
        flush=True,
    )
    check_fits(sizes, backend, stream)


def check_fits(sizes: dict, backend, stream: bool) -> None:
    """One line and a :class:`DataError` when the data cannot fit on the device."""
    room, what = available_bytes(backend)
    if room is None or sizes["total"] <= room:
        return
    advice = "a smaller --batch-size" if stream else "--stream to read the images a batch at a time"
    raise DataError(
        f"the training data needs {megabytes(sizes['total'])} on the device but "
        f"{megabytes(room)} is {what}; use {advice}"
    )
