"""Reading ``.npy`` and ``.npz`` files without trusting what their headers declare.

``numpy.load`` allocates the array a ``.npy`` header declares before it reads a
byte of data, so a crafted header claiming 37 GiB costs 37 GiB (or a
``MemoryError``). Here every header is read first and checked against the file:
the array must be numeric (object dtypes are refused from the header, so
nothing is ever unpickled) and the file must hold exactly the bytes its shape
and dtype declare. Inside an ``.npz``, each member must also be stored
uncompressed (as ``numpy.savez`` writes it) and lie inside the archive. Only
then is an array read, into an allocation of the size just checked.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np
from numpy.lib import format as npy_format

from .errors import DataError, MlpXpError, ModelFileError, first_line

__all__ = ["NpzReader", "Header", "read_npy", "NUMERIC_KINDS"]

#: dtype kinds an array may have: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
}
_PICKLED = "refused: the file holds pickled/object data, which mlp_xp never loads"


class _Refused(Exception):
    """A header this module will not read; the message lacks the file's name."""


@dataclass(frozen=True)
class Header:
    """An array as its ``.npy`` header declares it (nothing read yet)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    offset: int  # where the data starts
    nbytes: int  # what the shape and dtype need


def _header(fh: IO[bytes], size: int, what: str) -> Header:
    """Read and check one ``.npy`` header against the ``size`` bytes that hold it."""
    try:
        version = npy_format.read_magic(fh)
        reader = _HEADER_READERS.get(version)
        if reader is None:
            raise _Refused(f"{what} has .npy format version {version}")
        shape, fortran, dtype = reader(fh)
    except ValueError as exc:
        raise _Refused(f"{what} has an unreadable .npy header ({first_line(exc, 160)})") from None
    offset = fh.tell()
    if dtype.hasobject:
        raise _Refused(_PICKLED)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        raise _Refused(f"{what} has non-numeric dtype {dtype}")
    if any(d < 0 for d in shape):
        raise _Refused(f"{what} declares a negative shape {shape}")
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    if offset + nbytes != size:
        raise _Refused(
            f"{what} declares shape {shape} of {dtype} ({nbytes:,} bytes) "
            f"but the file holds {max(size - offset, 0):,} bytes for it"
        )
    return Header(dtype, tuple(shape), fortran, offset, nbytes)


def _read_data(fh: IO[bytes], header: Header) -> np.ndarray:
    """The array ``header`` describes, read from ``fh`` (positioned at its data)."""
    out = np.empty(header.shape, dtype=header.dtype, order="F" if header.fortran_order else "C")
    view = out.reshape(-1, order="A").view(np.uint8).data
    if header.nbytes and cast(io.BufferedIOBase, fh).readinto(view) != header.nbytes:
        raise _Refused("the data is shorter than its header declares (truncated?)")
    return out


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` file whose header has been checked against its size.

    Raises :class:`~mlp_xp.errors.DataError` naming the file for a missing file,
    a bad header, an object or non-numeric dtype, or a size the file does not
    have.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            header = _header(fh, os.fstat(fh.fileno()).st_size, "the array")
            return _read_data(fh, header)
    except _Refused as exc:
        raise DataError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a .npy file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({first_line(exc, 160)})") from None


class NpzReader:
    """An open ``.npz`` whose members' headers have been read and checked.

    Use as a context manager; :attr:`members` maps each array name (without
    ``.npy``) to its :class:`Header`; :meth:`read` reads one array.

    Raises
    ------
    ModelFileError
        The file is not a zip archive, a member is not a stored
        ``.npy`` array, declares a non-numeric dtype or a size its bytes do not
        have, or the archive is damaged.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._infos: dict[str, zipfile.ZipInfo] = {}
        try:
            with open(self.path, "rb") as fh:
                magic = fh.read(len(_NPY_MAGIC))
                size = os.fstat(fh.fileno()).st_size
            if magic.startswith(_NPY_MAGIC):
                raise _Refused("not an mlp_xp model file (a bare .npy array)")
            if not magic.startswith(_ZIP_MAGIC):
                raise _Refused("not an mlp_xp model file (not a .npz archive)")
            self._zip = zipfile.ZipFile(self.path)
            self.members = self._headers(size)
        except BaseException as exc:
            self.close()
            raise self._translate(exc) from None

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:
            raise _Refused("the model file was closed")
        return self._zip

    def _headers(self, archive_size: int) -> dict[str, Header]:
        members: dict[str, Header] = {}
        for info in self._archive().infolist():
            if not info.filename.endswith(".npy"):
                raise _Refused(f"not an mlp_xp model file (entry {info.filename!r})")
            name = info.filename[: -len(".npy")]
            what = f"array {name!r}"
            if name in members:
                raise _Refused(f"{what} appears twice")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise _Refused(f"{what} is compressed; model files store arrays uncompressed")
            if info.header_offset + info.compress_size > archive_size:
                raise _Refused(f"{what} lies past the end of the file (truncated?)")
            with self._archive().open(info) as fh:
                members[name] = _header(fh, info.file_size, what)
            self._infos[name] = info
        return members

    def read(self, name: str) -> np.ndarray:
        """The array ``name``: exactly the bytes its checked header declares."""
        header = self.members[name]
        try:
            with self._archive().open(self._infos[name]) as fh:
                fh.seek(header.offset)
                out = _read_data(fh, header)
                fh.read(1)  # reaches the end of the entry: zipfile checks its CRC
        except BaseException as exc:
            raise self._translate(exc, f"array {name!r}") from None
        return out

    def _translate(self, exc: BaseException, where: str = "") -> BaseException:
        """The package's error for what reading raised (other interrupts pass)."""
        if isinstance(exc, MlpXpError) or not isinstance(exc, Exception):
            return exc
        if isinstance(exc, _Refused):
            return ModelFileError(f"{self.path}: {exc}")
        if isinstance(exc, PermissionError):
            return ModelFileError(f"{self.path}: permission denied")
        # zipfile/zlib/EOF/struct errors: what a damaged archive raises
        where = f"{where}: " if where else ""
        return ModelFileError(
            f"{self.path}: corrupt or truncated model file ({where}{first_line(exc, 160)})"
        )

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
