"""Training sets larger than a device, or than memory.

- On the device the training images stay **uint8**, the pixels themselves (4x less than
  float32); each batch is scaled as it is gathered (``Trainer(pixels=...)``).
- Uncompressed IDX files are read by memory map (``load_digits(..., mapped=True)``), and a
  folder may hold several shards (``train-00-images-idx3-ubyte``,
  ``train-00-labels-idx1-ubyte``, ...): :class:`~mlp_xp.data.shards.Shards` joins them
  without copying.
- With ``--stream`` the images never move to the device as a whole: each step reads its
  rows (a rank only those of its share) from the memory maps and sends them as one uint8
  host-to-device copy (:class:`StreamedStep`), so a set larger than RAM trains a batch
  at a time.
- :func:`data_bytes` is what ``mlp-xp train`` prints before it starts, and
  :func:`check_fits` refuses, in one line naming the size and ``--stream``, a set that
  cannot fit.
"""

from __future__ import annotations

from ..budget import available_bytes
from ..errors import DataError
from .steps import StreamedStep

__all__ = [
    "StreamedStep",
    "data_bytes",
    "check_fits",
    "report_and_check",
]


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
