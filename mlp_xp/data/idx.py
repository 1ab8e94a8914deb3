"""The IDX file format of MNIST, Fashion-MNIST and KMNIST.

An IDX file is a big-endian header -- two zero bytes, a type code, the number
of dimensions, then one uint32 per dimension -- followed by the raw values.
Files may be gzip'd. Every reader here validates the header against the payload
and raises :class:`~mlp_xp.errors.DataError` with one clear sentence on any
mismatch.

The size a header declares is checked before anything that size is allocated:
a raw file's length is compared with it before its data is read; a gzip'd file's
declared size must be one its compressed length can hold (deflate compresses at
most 1032:1), and it is decompressed in chunks, at most the declared size plus one
byte, so a header that lies about its shape costs no more memory than the file
really holds. :func:`idx_header` reads a file's header alone, so that a caller can
judge the sizes of several files (images against labels, the total against free
memory) before reading any payload.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import IO, cast

import numpy as np

from ..errors import DataError
from ..fileio import atomic_write

__all__ = ["read_idx", "map_idx", "write_idx", "parse_idx", "idx_header", "is_gzip"]

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("=").str[1:]: code for code, dt in _IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: Deflate's largest compression ratio: a match of 258 bytes coded in as few as 2 bits
#: (zlib's "technical details", *Maximum Compression Factor*: 1032:1). A gzip'd file of
#: ``n`` bytes decompresses to at most ``1032 n`` bytes, whatever its header says.
DEFLATE_MAX_RATIO = 1032


def _header(raw: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, dims, header length)`` from the first bytes of an IDX file.

    ``raw`` needs at least the 4 magic bytes; with fewer than the whole header
    the dimensions come back empty and the length says how many bytes to read.
    """
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
    length = 4 + 4 * ndim
    if len(raw) < length:
        return dtype, (), length
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    nominal = dtype.itemsize
    for d in dims:
        nominal *= max(d, 1)  # a zero dimension must not excuse absurd others
    if nominal > np.iinfo(np.intp).max:
        raise DataError(f"{name}: IDX header shape {dims} is larger than any array can be")
    return dtype, dims, length


def _declared_bytes(dtype: np.dtype, dims: tuple[int, ...]) -> int:
    """Payload bytes the header's shape needs (Python ints: no overflow)."""
    count = 1
    for d in dims:
        count *= d
    return count * dtype.itemsize


def _check_length(name: str, dims, expected: int, got: int, more: str = "") -> None:
    """The payload must be exactly the ``expected`` bytes the header declares."""
    if got < expected:
        raise DataError(
            f"{name}: truncated: header shape {dims} needs {expected:,} data bytes, "
            f"file has {got:,}"
        )
    if got > expected:
        extra = more or f"{got - expected:,} bytes"
        raise DataError(
            f"{name}: {extra} past the end of the data that header shape {dims} describes"
        )


def _decode(payload, dtype: np.dtype, dims) -> np.ndarray:
    data = np.frombuffer(payload, dtype=dtype, count=len(payload) // dtype.itemsize)
    # bytes have no byte order: uint8 pixels read into a writable buffer stay there
    copy = dtype.itemsize > 1 or not data.flags.writeable
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=copy)


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one (already decompressed) IDX file."""
    dtype, dims, length = _header(raw, name)
    if not dims:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} of {length} bytes)")
    expected = _declared_bytes(dtype, dims)
    _check_length(name, dims, expected, len(raw) - length)
    return _decode(memoryview(raw)[length:], dtype, dims)


def _read_at_most(stream: IO[bytes], limit: int) -> bytearray:
    """Up to ``limit`` bytes, read in chunks: memory grows with the data, not the limit."""
    out = bytearray()
    while len(out) < limit:
        block = stream.read(min(_CHUNK, limit - len(out)))
        if not block:
            break
        out += block
    return out


def _stream_header(stream: IO[bytes], name: str, packed: int | None):
    """``(dtype, dims, header length)`` read from ``stream``; with ``packed`` (a gzip'd
    file's length) the declared size must be one that many bytes can hold."""
    head = bytes(_read_at_most(stream, 4))
    dtype, _, length = _header(head, name)
    head += _read_at_most(stream, length - 4)
    dtype, dims, length = _header(head, name)
    if not dims:
        raise DataError(f"{name}: truncated IDX header ({len(head)} of {length} bytes)")
    declared = _declared_bytes(dtype, dims)
    if packed is not None and length + declared > DEFLATE_MAX_RATIO * packed:
        raise DataError(
            f"{name}: header shape {dims} declares {declared:,} data bytes, but a gzip file "
            f"of {packed:,} bytes holds at most {DEFLATE_MAX_RATIO * packed:,} (deflate "
            f"compresses at most {DEFLATE_MAX_RATIO}:1)"
        )
    return dtype, dims, length


def _read_idx_stream(
    stream: IO[bytes], name: str, size: int | None, packed: int | None = None
) -> np.ndarray:
    """Read the header, check the declared size, then read the payload.

    ``size`` is the byte length of a raw file (compared with the declared size
    before the payload is read), or ``None`` for a decompressing stream of a gzip'd
    file of ``packed`` bytes (read up to the declared size plus one byte, to notice
    data past the end).
    """
    dtype, dims, length = _stream_header(stream, name, packed)
    expected = _declared_bytes(dtype, dims)
    if size is not None:
        _check_length(name, dims, expected, size - length)
        payload = _read_at_most(stream, expected)
        _check_length(name, dims, expected, len(payload))  # the file shrank meanwhile
    else:
        payload = _read_at_most(stream, expected + 1)
        _check_length(name, dims, expected, len(payload), "more bytes")
    return _decode(payload, dtype, dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip'd or raw) into a NumPy array, validating it fully.

    The header's declared size is checked against the file before the data is
    read (for gzip: at most the declared size plus one byte is decompressed).

    Raises
    ------
    DataError
        Missing/unreadable file, bad gzip, bad magic, or a payload shorter or
        longer than the header declares.
    """
    path = Path(path)
    name = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head != _GZIP_MAGIC:
                if path.suffix == ".gz":
                    raise DataError(f"{path}: named .gz but is not a gzip file")
                return _read_idx_stream(fh, name, os.fstat(fh.fileno()).st_size)
            packed = os.fstat(fh.fileno()).st_size
            with gzip.GzipFile(fileobj=fh) as gz:
                return _read_idx_stream(cast(IO[bytes], gz), name, None, packed)
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


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file starts with gzip's magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """The ``(dtype, dims)`` an IDX file's header declares, checked against what the file
    can hold (a raw file's length; a gzip'd file's length times deflate's largest ratio),
    reading (and decompressing) the header alone."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if fh.read(2) != _GZIP_MAGIC:
                fh.seek(0)
                dtype, dims, length = _stream_header(fh, str(path), None)
                _check_length(str(path), dims, _declared_bytes(dtype, dims), size - length)
                return dtype, dims
            fh.seek(0)
            with gzip.GzipFile(fileobj=fh) as gz:
                dtype, dims, _ = _stream_header(cast(IO[bytes], gz), str(path), size)
                return dtype, dims
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read its IDX header ({exc})") from None


def map_idx(path: str | os.PathLike) -> np.ndarray:
    """An uncompressed IDX file as a read-only memory map (gzip'd files: :func:`read_idx`).

    Nothing but the header is read here; the rows a caller indexes are paged in from
    the file as they are touched, so a file larger than memory can be used a batch at a
    time. The header is validated against the file's length, as :func:`read_idx` does.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head[:2] == _GZIP_MAGIC:
                return read_idx(path)
            dtype, _, length = _header(head, str(path))
            head += fh.read(length - 4)
            dtype, dims, length = _header(head, str(path))
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not dims:
        raise DataError(f"{path}: truncated IDX header")
    _check_length(str(path), dims, _declared_bytes(dtype, dims), size - length)
    if 0 in dims:
        return np.zeros(dims, dtype=dtype.newbyteorder("="))
    return np.memmap(path, dtype=dtype, mode="r", offset=length, shape=tuple(dims))


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
