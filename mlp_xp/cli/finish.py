"""How ``mlp-xp train`` ends: a run that learned nothing says so, and nothing is lost.

- :func:`failure` judges the finished run: a held-out score no better than chance
  (the majority class for classifiers, the targets' variance for regression, within
  three standard errors of the held-out estimate; judged on 100 held-out samples or
  more, as fewer cannot tell), or a held-out loss a hundred times the untrained
  network's, is a failed run.
- :func:`save_without_replacing` writes a failed run's model beside an existing file
  (``model.failed.npz``), never over it.
- :func:`save_or_fallback` writes the model, or, when that write fails (a full disk),
  to a fallback path in the temp folder or the home folder, and says where.
- :func:`check_space` refuses a run whose outputs do not fit on their disks before the
  first step.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError, TrainingFailedError

__all__ = [
    "failure",
    "save_without_replacing",
    "save_or_fallback",
    "save_final",
    "check_space",
    "output_sizes",
    "GROWTH",
]

#: A held-out loss this many times the untrained network's is a run that blew up.
GROWTH = 100.0
#: Standard errors of the held-out estimate a score must clear to be better than chance.
SIGMAS = 3.0
#: Fewer held-out samples than this cannot tell chance from learning: not judged.
MIN_JUDGED = 100


def failure(task: str, final: dict, targets: np.ndarray, initial_loss: float | None) -> str | None:
    """Why the finished run failed (one sentence), or None when it learned something."""
    loss = final.get("loss")
    if (
        initial_loss is not None
        and loss is not None
        and initial_loss > 0
        and (not math.isfinite(loss) or loss > GROWTH * initial_loss)
    ):
        return (
            f"the held-out loss grew from {initial_loss:.4g} (untrained) to {loss:.4g}: "
            "the run blew up"
        )
    n = len(targets)
    if n < MIN_JUDGED:
        return None
    if task == "regress":
        variance = float(np.var(np.asarray(targets, dtype=np.float64)))
        bound = variance * (1 - SIGMAS * math.sqrt(2 / n))
        if final["mse"] >= bound:
            return (
                f"held-out MSE {final['mse']:.4f} is no better than predicting the mean "
                f"(the targets' variance is {variance:.4f})"
            )
        return None
    counts = np.bincount(np.asarray(targets, dtype=np.int64).ravel())
    majority = float(counts.max() / n)
    bound = majority + SIGMAS * math.sqrt(majority * (1 - majority) / n)
    if final["accuracy"] <= bound:
        return (
            f"held-out accuracy {100 * final['accuracy']:.2f}% is chance (always answering "
            f"the most frequent class scores {100 * majority:.2f}%)"
        )
    return None


def failed_path(out: Path) -> Path:
    """Where a failed run's model goes when ``out`` already holds a file."""
    return out.with_name(f"{out.name.removesuffix('.npz')}.failed.npz")


def save_without_replacing(save: Callable[[Path], Any], out: Path) -> Path:
    """``save(path)`` to ``out`` if nothing is there, else beside it; returns the path
    (an OutputError when no folder could take it)."""
    path = failed_path(out) if out.exists() else out
    saved, _ = save_or_fallback(save, path)
    return saved


def fallback_paths(out: Path) -> Iterator[Path]:
    """Where a file goes when its own path cannot be written: a new folder of this user's
    own in the temp folder (made with ``mkdtemp``, so no name another user could have
    planted a link at), else the home folder."""
    with contextlib.suppress(OSError):
        yield Path(tempfile.mkdtemp(prefix="mlp-xp-")) / out.name
    yield Path.home() / f"mlp-xp-{os.getpid()}-{out.name}"


def save_or_fallback(save: Callable[[Path], Any], out: Path) -> tuple[Path, OutputError | None]:
    """``save(out)``; when that fails, ``save`` to the first fallback path that works.

    Returns where it went and, when that is a fallback, why ``out`` could not be
    written. Raises the OutputError of ``out`` when no fallback could be written either.
    """
    try:
        save(out)
        return out, None
    except OutputError as exc:
        first = exc
    for path in fallback_paths(out):
        try:
            save(path)
        except OutputError:
            continue
        return path, first
    raise OutputError(f"{first}; no fallback folder could be written either") from None


def save_final(save: Callable[[Path], Any], out: Path) -> None:
    """The finished model to ``out``; when that fails, to a fallback, named in the error."""
    saved, error = save_or_fallback(save, out)
    if error is not None:
        raise OutputError(f"{error}; the model was saved to {saved} instead") from None


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def check_space(needs: dict[Path, int]) -> None:
    """Refuse (OutputError) when the files a run will write do not fit where they go.

    ``needs`` maps each output path to the bytes it will hold; paths on one file system
    are added up (a rename needs the new file whole beside the old one).
    """
    by_disk: dict[Any, list] = defaultdict(list)
    for path, size in needs.items():
        folder = _existing_folder(path)
        try:
            by_disk[os.stat(folder).st_dev].append((path, size, folder))
        except OSError:
            continue
    for items in by_disk.values():
        total = sum(size for _, size, _ in items)
        try:
            free = shutil.disk_usage(items[0][2]).free
        except OSError:
            continue
        if total > free:
            names = ", ".join(str(path) for path, _, _ in items)
            raise OutputError(
                f"{names}: the run will write about {_mib(total)} there but the disk has "
                f"{_mib(free)} free; free some space or write elsewhere (--out, --run-dir)"
            )


def _existing_folder(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def raise_failed(reason: str, lr: float, saved: Path, out: Path) -> None:
    """The failed run's one line (exit 2)."""
    kept = f"; {out} is left as it was" if saved != out else ""
    change = "a lower --lr" if "blew up" in reason else "another --lr"
    raise TrainingFailedError(
        f"training failed: {reason}; try {change} (this run used {lr:g}) or another "
        f"--optimizer; the model was saved to {saved}{kept}"
    )


def output_sizes(spec) -> dict[Path, int]:
    """About how many bytes each file of the run ``spec`` will hold: the model, the
    checkpoint (parameters, optimizer slots, moving average, best epoch), the run log."""
    model, config = spec.model, spec.config
    params = model.n_params * np.dtype(model.dtype).itemsize
    slots = {"adam": 2, "momentum": 1}.get(config.optimizer, 0 if not config.momentum else 1)
    copies = 1 + slots + (config.ema > 0) + (config.patience > 0)
    needs = {spec.out: params + 2**20, spec.checkpoint_path: copies * params + 2**20}
    if spec.run_dir is not None:
        needs[spec.run_dir / "history.json"] = 2 * 1024 * config.epochs + 2**16
    return needs
