"""The IDX file format of MNIST, Fashion-MNIST and KMNIST.

An IDX file is a big-endian header -- two zero bytes, a type code, the number
of dimensions, then one uint32 per dimension -- followed by the raw values.
Files may be gzip'd. Every reader here validates the header against the payload
and raises :class:`~mlp_xp.errors.DataError` with one clear sentence on any
mismatch.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import atomic_write

__all__ = ["read_idx", "write_idx", "parse_idx", "MAX_IDX_BYTES"]

#: Refuse IDX headers that claim more than this many payload bytes (full MNIST is ~47 MB).
MAX_IDX_BYTES = 1 << 31

_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("=").str[1:]: code for code, dt in _IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one (already decompressed) IDX file."""
    if len(raw) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        magic = int.from_bytes(raw[:4], "big")
        raise DataError(
            f"{name}: bad IDX magic number {magic} (0x{magic:08x}); expected "
            "e.g. 2051 for images or 2049 for labels"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    if ndim < 1:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    nominal = int(np.prod([max(d, 1) for d in dims], dtype=object)) * dtype.itemsize
    if max(expected, nominal) > MAX_IDX_BYTES:  # a zero dim must not excuse absurd others
        raise DataError(
            f"{name}: IDX header claims shape {dims} ({expected:,} bytes), "
            f"more than the {MAX_IDX_BYTES:,}-byte limit"
        )
    got = len(raw) - header
    if got < expected:
        raise DataError(
            f"{name}: truncated: header shape {dims} needs {expected:,} data bytes, "
            f"file has {got:,}"
        )
    if got > expected:
        raise DataError(
            f"{name}: {got - expected:,} bytes past the end of the data that "
            f"header shape {dims} describes"
        )
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
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.astype(_IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    return atomic_write(path, lambda fh: fh.write(payload))
