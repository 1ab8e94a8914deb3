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
  file behind;
- the target is a new path or a regular file: a device (``/dev/full``,
  ``/dev/null``), a pipe or a socket is refused, never replaced by a file; a symbolic
  link is written through, to its target (the temp file beside the target, so the
  rename stays atomic and the link stays a link);
- a temp file carries the writer's process id (``.NAME.PID.XXXX.tmp``): one left by a
  process that no longer runs (killed during a save) is removed by the next write of
  the same file (POSIX; on Windows, where no process can be asked whether it lives
  without opening it, such files are left).

:func:`output_path` is what every command asks before it writes: the same checks,
plus "not one of this command's inputs" (``mlp-xp export model.npz model.npz``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import OutputError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "replace",
    "check_writable",
    "output_path",
    "write_target",
    "remove_stale_temps",
]

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
    given = Path(path)
    path = _target(given)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _output_error(given, exc) from None
    return given


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, then rename it into place.

    Raises
    ------
    OutputError
        The folder or the file cannot be written (the previous file, if any, is
        left as it was).
    """
    given = Path(path)
    path = _target(given)  # a symbolic link: its target, written beside itself
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _output_error(given, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:  # the descriptor is closed on every path from here
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the usual permissions
                os.fchmod(fh.fileno(), _mode_for(path))
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise _output_error(given, exc) from None
        raise
    _fsync_dir(folder)
    return given


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` as UTF-8 (never the locale's encoding), atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def output_path(path: str | os.PathLike, inputs=()) -> Path:
    """``path`` as a command's output, refused (:class:`OutputError`) before anything runs
    when it is empty, a folder, a device, pipe or socket, a link that leads nowhere it can
    write, or one of ``inputs`` (the files the same command reads)."""
    if not str(path).strip():
        raise OutputError("an empty output path: give a file name")
    given = Path(path)
    target = _target(given)
    for source in inputs:
        if source is not None and _same_file(target, Path(source)):
            raise OutputError(
                f"{given}: it is also an input of this command ({source}); writing it would "
                "destroy what is read: give another output path"
            )
    return given


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they lead
        return os.path.realpath(a) == os.path.realpath(b)


def write_target(path: str | os.PathLike) -> Path:
    """Where writing ``path`` lands: the path, or the final target of a symbolic link;
    refused (OutputError) when that is a folder or not a regular file."""
    return _target(Path(path))


def _target(path: Path) -> Path:
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if path.is_symlink() and target.is_symlink():  # realpath stops inside a loop
        raise OutputError(f"{path}: a symbolic link that leads to itself; give a file name")
    if not str(target.parent):
        target = Path(".") / target
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target  # a new file
    except OSError as exc:
        raise _output_error(path, exc) from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path}: cannot write it (Is a directory)")
    if not stat.S_ISREG(mode):
        what = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        raise OutputError(
            f"{path}: {what} (a file is written by creating a new one and renaming it over "
            "the old, which would replace it); give a file name"
        )
    return target


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` may still run here (POSIX asks the system). Where that cannot
    be asked safely (Windows' ``os.kill`` terminates), every process is taken to be running."""
    if os.name == "nt" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive but another user's, or cannot tell
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temp files an earlier writer of ``path`` left when it was killed
    (its process no longer runs); returns them. A live writer's temp file is kept."""
    path = Path(path)
    prefix = f".{path.name}."
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent if str(path.parent) else ".")
    except OSError:
        return removed
    for name in names:
        match = re.fullmatch(r"(\d+)\.[^.]+\.tmp", name[len(prefix) :])
        if name.startswith(prefix) and match and not process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)
                removed.append(path.parent / name)
    return removed


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
