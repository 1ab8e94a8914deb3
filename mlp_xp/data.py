"""Datasets: the IDX file format, the embedded digits, splits and scaling.

IDX (the format of MNIST, Fashion-MNIST and KMNIST) is a big-endian header --
two zero bytes, a type code, the number of dimensions, then one uint32 per
dimension -- followed by the raw values. Files may be gzip'd. Every reader here
validates the header against the payload and raises
:class:`~mlp_xp.errors.DataError` with one clear sentence on any mismatch.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import DataError
from .fileio import atomic_write

__all__ = [
    "read_idx", "write_idx", "parse_idx", "Digits", "load_digits", "stratified_split",
    "scale_images", "EMBEDDED", "embedded_dir", "N_CLASSES",
]

EMBEDDED = "mnist-5k"
N_CLASSES = 10
#: Refuse IDX headers that claim more than this many payload bytes (full MNIST is ~47 MB).
MAX_IDX_BYTES = 1 << 31

_IDX_TYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("=").str[1:]: code for code, dt in _IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------
# the IDX format
# --------------------------------------------------------------------------

def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one (already decompressed) IDX file."""
    if len(raw) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        magic = int.from_bytes(raw[:4], "big")
        raise DataError(f"{name}: bad IDX magic number {magic} (0x{magic:08x}); expected "
                        "e.g. 2051 for images or 2049 for labels")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    if ndim < 1:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    nominal = int(np.prod([max(d, 1) for d in dims], dtype=object)) * dtype.itemsize
    if max(expected, nominal) > MAX_IDX_BYTES:  # a zero dim must not excuse absurd others
        raise DataError(f"{name}: IDX header claims shape {dims} ({expected:,} bytes), "
                        f"more than the {MAX_IDX_BYTES:,}-byte limit")
    got = len(raw) - header
    if got < expected:
        raise DataError(f"{name}: truncated: header shape {dims} needs {expected:,} data bytes, "
                        f"file has {got:,}")
    if got > expected:
        raise DataError(f"{name}: {got - expected:,} bytes past the end of the data that "
                        f"header shape {dims} describes")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    """The decompressed bytes of a file, gzip recognised by its magic number."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head != _GZIP_MAGIC:
                if path.suffix == ".gz":
                    raise DataError(f"{path}: named .gz but is not a gzip file")
                size = os.fstat(fh.fileno()).st_size
                if size > MAX_IDX_BYTES + 64:
                    raise DataError(f"{path}: {size:,} bytes, more than the IDX size limit")
                return fh.read()
            with gzip.GzipFile(fileobj=fh) as gz:
                raw = gz.read(MAX_IDX_BYTES + 64)
                if gz.read(1):
                    raise DataError(f"{path}: decompresses to more than the IDX size limit")
                return raw
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip'd or raw) into a NumPy array, validating it fully.

    Raises
    ------
    DataError
        Missing/unreadable file, bad gzip, bad magic, truncated or overlong payload,
        or a header that claims an absurd size.
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip'd when ``compress`` or the name ends ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in _IDX_CODES:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    code = _IDX_CODES[key]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(_IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    return atomic_write(path, lambda fh: fh.write(payload))


# --------------------------------------------------------------------------
# digit datasets
# --------------------------------------------------------------------------

@dataclass
class Digits:
    """Images (N, H, W) and integer labels (N,) on the host, plus where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def embedded_dir() -> Path:
    """Folder of the embedded 5,000-digit MNIST subset.

    In a source checkout (or an editable install) it is the repository's
    ``data/mnist-5k``; an installed wheel carries the same files as the
    ``mlp_xp._embedded`` package data.
    """
    checkout = Path(__file__).resolve().parent.parent / "data" / EMBEDDED
    if checkout.is_dir():
        return checkout
    try:
        return Path(str(resources.files("mlp_xp._embedded") / EMBEDDED))
    except ModuleNotFoundError:
        raise DataError("the embedded mnist-5k digits are missing from this installation; "
                        "pass --data DIR") from None


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no {stem} or {stem}.gz (expected MNIST-format IDX files)")


def load_digits(source: str | os.PathLike = EMBEDDED, split: str = "train",
                n_classes: int = N_CLASSES) -> Digits:
    """Load images and labels from the embedded subset or a folder of IDX files.

    Parameters
    ----------
    source : "mnist-5k" or path
        A folder with ``train-images-idx3-ubyte[.gz]`` and
        ``train-labels-idx1-ubyte[.gz]`` (and ``t10k-*`` for ``split="test"``).
    split : {"train", "test"}
        Which files; the held-out validation split is cut from ``train`` by
        :func:`stratified_split`.
    """
    if str(source) == EMBEDDED:
        folder = embedded_dir()
    else:
        folder = Path(source)
        if not folder.exists():
            raise DataError(f"{folder}: no such folder (use --data mnist-5k or a folder of "
                            "IDX files)")
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder of IDX files")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: choose train or test")
    prefix = "train" if split == "train" else "t10k"
    if split == "test" and str(source) == EMBEDDED:
        raise DataError("the embedded mnist-5k subset has no test split: use --split val, "
                        "or --data DIR with t10k-* files")
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    validate_digits(images, labels, n_classes, str(folder))
    return Digits(images, labels.astype(np.int64), str(source))


def validate_digits(images: np.ndarray, labels: np.ndarray, n_classes: int, name: str) -> None:
    """Shapes, counts, label range and finiteness of a labelled image set."""
    if images.ndim != 3:
        raise DataError(f"{name}: images must be 3-D (N, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise DataError(f"{name}: the dataset is empty")
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise DataError(f"{name}: labels must be integers")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"{name}: labels must be in 0..{n_classes - 1}, found "
                        f"{labels.min()}..{labels.max()}")
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        raise DataError(f"{name}: images contain NaN or Inf")


def scale_images(images: np.ndarray, dtype="float32") -> np.ndarray:
    """Flatten (N, H, W) images to (N, H*W) rows scaled to [0, 1].

    uint8 pixels are divided by 255; float pixels are taken as already in
    [0, 1] unless their max exceeds 1, in which case they are divided by 255.
    """
    images = np.asarray(images)
    if images.ndim == 2 and images.shape == (28, 28):
        images = images[None]
    flat = images.reshape(images.shape[0], -1)
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)):
            raise DataError("input contains NaN or Inf")
        out = flat.astype(dtype)
        return out / np.asarray(255, dtype) if out.size and out.max() > 1.0 else out
    if flat.dtype.kind not in "iub":
        raise DataError(f"cannot use {flat.dtype} pixels as input")
    out = flat.astype(dtype)
    out *= np.asarray(1.0 / 255.0, dtype)   # in place: one float copy of the data, not two
    return out


def stratified_split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split into (train indices, validation indices).

    Each class keeps the same share in both parts; the same labels, fraction and
    seed always give the same split, whatever the device.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = int(round(val_fraction * idx.size))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train_idx, val_idx = np.concatenate(train), np.concatenate(val)
    if train_idx.size == 0 or val_idx.size == 0:
        raise DataError(f"{labels.size} samples are too few for a {val_fraction:.0%} "
                        "validation split")
    return np.sort(train_idx), np.sort(val_idx)


def stratified_folds(labels: np.ndarray, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint index sets, each with every class's share (for cross-validation)."""
    rng = np.random.default_rng(seed)
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        for i, part in enumerate(np.array_split(idx, k)):
            folds[i].append(part)
    return [np.sort(np.concatenate(f)) for f in folds]


def load_array_file(path: str | os.PathLike) -> np.ndarray:
    """Images from an IDX file or a ``.npy`` file (no pickles), for prediction."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    else:
        arr = read_idx(path)
    if arr.ndim == 2 and arr.shape == (28, 28):
        arr = arr[None]
    if arr.ndim not in (2, 3) or arr.shape[0] == 0:
        raise DataError(f"{path}: expected images of shape (N, 28, 28) or (N, 784), "
                        f"got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: cannot use {arr.dtype} values as pixels")
    return arr


