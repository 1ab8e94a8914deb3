"""One run per run folder: ``--run-dir`` is claimed with a lock file, and a folder that
holds another run's files is refused unless ``--overwrite`` says to clear them.

A run folder holds what :data:`RUN_FILES` names (history, checkpoint, calibration,
plots) and, by default, the model. A new run into a folder holding any of them
would mix two runs (plots of the old model beside the new history), so it is
refused; with ``--overwrite`` they are removed first (the model is replaced only
once the new run has succeeded). A resumed run continues in its own folder.

The lock is ``.mlp-xp.lock`` holding the process id, created exclusively; a lock
whose process no longer runs (a killed run) is taken over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError
from ..fileio import process_alive, remove_stale_temps

__all__ = ["RUN_FILES", "LOCK", "claim"]

#: What a run (``train``, then ``plot``) writes in its folder, besides the model.
RUN_FILES = (
    "history.csv",
    "history.json",
    "checkpoint.npz",
    "reliability.json",
    "learning_curves.png",
    "confusion_matrix.png",
    "worst_digits.png",
    "reliability.png",
)
LOCK = ".mlp-xp.lock"


def _lock(folder: Path) -> Path:
    """Create the lock or refuse; a lock left by a dead process is replaced.

    The lock appears with its process id already in it (written to a file of this
    process's own, then linked into place, which fails if a lock exists), so no other run
    ever reads an empty lock and takes it for a dead one."""
    lock = folder / LOCK
    mine = folder / f"{LOCK}.{os.getpid()}"
    try:
        mine.write_text(str(os.getpid()), encoding="ascii")
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write it ({exc.strerror or exc})") from None
    try:
        for _ in range(2):
            try:
                os.link(mine, lock)
                return lock
            except FileExistsError:
                _refuse_or_clear(folder, lock)
            except OSError as exc:
                raise OutputError(f"{folder}: cannot write it ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            mine.unlink()
    raise OutputError(f"{folder}: cannot take its lock {lock}; remove it if no run is going on")


def _refuse_or_clear(folder: Path, lock: Path) -> None:
    """Refuse while the lock's process runs; remove a lock its process left behind."""
    try:
        pid = int(lock.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        pid = 0
    if not pid or process_alive(pid):  # an unreadable lock is not taken for a dead one
        who = f"process {pid}" if pid else "a process"
        raise OutputError(
            f"{folder}: another run ({who}) is writing to this run folder; "
            "wait for it or choose another --run-dir"
        ) from None
    with contextlib.suppress(OSError):
        lock.unlink()


def _others(folder: Path, model: Path, resumed: Path | None) -> list[Path]:
    """The files of another run in ``folder`` (none when resuming from this folder)."""
    if resumed is not None and resumed.resolve().parent == folder.resolve():
        return []
    names = [*RUN_FILES, model.name] if model.parent.resolve() == folder.resolve() else RUN_FILES
    return [folder / name for name in names if (folder / name).exists()]


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"{path}: cannot remove it ({exc.strerror or exc})") from None


@contextlib.contextmanager
def claim(
    folder: Path | None, model: Path, resumed: Path | None, overwrite: bool
) -> Iterator[None]:
    """Hold ``folder`` for this run: locked, and free of another run's files."""
    if folder is None:
        yield
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the run folder ({exc.strerror})") from None
    lock = _lock(folder)
    try:
        others = _others(folder, model, resumed)
        if others and not overwrite:
            names = ", ".join(p.name for p in others)
            raise OutputError(
                f"{folder}: the run folder holds another run ({names}); pass --overwrite to "
                "replace it, --resume its checkpoint to continue it, or choose another --run-dir"
            )
        for path in others:
            if path.resolve() != model.resolve():  # replaced only when the new run succeeds
                _remove(path)
        for name in (*RUN_FILES, model.name):
            remove_stale_temps(folder / name)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
