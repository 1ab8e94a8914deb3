"""Crash-safe file writing: temp file in the same folder, fsync, then rename.

A crash or ``kill -9`` at any point leaves either the previous file or the new
one, never a half-written file under the final name. The same on every OS:

- the rename is :func:`os.replace`, atomic on POSIX and on Windows (NTFS). Windows
  refuses it while another process holds the target open (a reader, an antivirus
  scan, a search indexer): :func:`replace` retries for about two seconds before
  giving up (elsewhere a refused rename is a real error; it costs the same wait);
- the folder is fsync'd after the rename where folders can be opened (POSIX), so
  the rename itself survives a power cut; Windows cannot open a folder as a file
  and commits the rename with its file-system journal, so it is skipped there
  (and wherever else opening or syncing a folder fails);
- a write that fails (no permission, disk full, a file where a folder should be)
  raises :class:`~mlp_xp.errors.OutputError` naming the file, and leaves no temp
  file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import OutputError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "replace", "check_writable"]

#: Seconds to wait before each new try while the OS refuses a rename (Windows).
REPLACE_RETRIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: Whether folders can be opened and fsync'd (POSIX); Windows cannot.
FSYNC_FOLDERS = os.name != "nt"


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """:func:`os.replace`, retried while it fails with :class:`PermissionError`.

    That is how Windows refuses to replace a file another process has open;
    once that process lets go, the rename succeeds. The last refusal is raised.
    """
    for delay in (*REPLACE_RETRIES, None):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if delay is None:
                raise
            time.sleep(delay)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, not after an hour of training, if ``path`` cannot be written.

    Creates its folder if needed and a temp file in it (removed at once).

    Raises
    ------
    OutputError
        Naming ``path`` and the reason.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path))
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _output_error(path, exc) from None
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, then rename it into place.

    Raises
    ------
    OutputError
        The folder or the file cannot be written (the previous file, if any, is
        left as it was).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _output_error(path, exc) from None
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise _output_error(path, exc) from None
        raise
    _fsync_dir(folder)
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` as UTF-8 (never the locale's encoding), atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"{path}: cannot write it ({reason})")


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, else what a plain ``open()`` would give."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself where the OS lets a folder be opened and fsync'd."""
    if not FSYNC_FOLDERS:
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # as on Windows: a folder cannot be opened like a file
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder
        pass
    finally:
        os.close(fd)
