"""gzip'd IDX files decompressed once into the user's cache, so they can be memory-mapped.

A gzip stream cannot be indexed by row, so a streamed run (``mlp-xp train --stream``) of a
``.gz`` images file first writes its decompressed bytes to the cache folder -- nothing is
written beside the user's data -- and memory-maps that copy, a batch at a time, like any
raw file. The copy is made once: its name holds a digest of the source's path, size and
modification time, so a changed source gets a new copy, and the copy's length is checked
against its header's size every time it is used (a copy cut short is made again).

The folder is ``$MLP_XP_CACHE`` when set, else the platform's user cache:
``$XDG_CACHE_HOME/mlp-xp`` or ``~/.cache/mlp-xp`` (Linux and other POSIX systems),
``~/Library/Caches/mlp-xp`` (macOS), ``%LOCALAPPDATA%\\mlp-xp\\Cache`` (Windows).
Decompression is bounded as :func:`~mlp_xp.data.idx.read_idx`'s is, and refused in one
line when the cache's disk has no room for the declared size.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import zlib
from pathlib import Path

from ..errors import DataError, MemoryBudgetError
from ..fileio import atomic_write
from .idx import _CHUNK, _declared_bytes, idx_header, is_gzip

__all__ = ["cache_dir", "decompressed", "stream_note"]


def cache_dir() -> Path:
    """Where decompressed copies go (see the module's docstring)."""
    if os.environ.get("MLP_XP_CACHE"):
        return Path(os.environ["MLP_XP_CACHE"])
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "mlp-xp" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "mlp-xp"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlp-xp"


def _key(path: Path) -> str:
    status = path.stat()
    text = f"{path.resolve()}\n{status.st_size}\n{status.st_mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def decompressed(path: str | os.PathLike) -> Path:
    """A raw copy of the gzip'd IDX file ``path`` in :func:`cache_dir`, made on first use.

    Raises
    ------
    DataError
        The file is not a valid IDX file, or holds more or less than its header declares.
    MemoryBudgetError
        The cache's disk has no room for the declared size.
    """
    path = Path(path)
    dtype, dims = idx_header(path)  # checked against what the gzip'd file can hold
    total = 4 + 4 * len(dims) + _declared_bytes(dtype, dims)
    target = cache_dir() / f"{path.name.removesuffix('.gz')}-{_key(path)}"
    if target.is_file() and target.stat().st_size == total:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if total > free:
        raise MemoryBudgetError(
            f"{path}: --stream decompresses it once to {target.parent}, which needs "
            f"{total / 1e6:,.1f} MB, but {free / 1e6:,.1f} MB is free there; set "
            "MLP_XP_CACHE to a folder on a larger disk"
        )

    def copy(out) -> None:
        written = 0
        with gzip.open(path, "rb") as src:
            while block := _read(src, min(_CHUNK, total + 1 - written), path):
                written += len(block)
                if written > total:
                    raise DataError(f"{path}: more bytes past the end of the declared data")
                out.write(block)
        if written < total:
            raise DataError(
                f"{path}: truncated: header declares {total:,} bytes, file has {written:,}"
            )

    return atomic_write(target, copy)


def _read(src, n: int, path: Path) -> bytes:
    try:
        return src.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None


def stream_note(files) -> str | None:
    """What a streamed run says of its gzip'd images files (``None`` when there are none)."""
    packed = [Path(f) for f in files if "images" in Path(f).name and is_gzip(f)]
    if not packed:
        return None
    return (
        f"--stream: {len(packed)} gzip'd images file(s) decompressed once to {cache_dir()} "
        "and memory-mapped from there"
    )
