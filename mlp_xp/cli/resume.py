"""``train --resume``: which flags a resumed run honours, refuses or extends with, and
where it writes.

A resumed run is the run its checkpoint holds. The parser records which flags
were typed (``args.given``), so only a flag that was given is judged -- a
default never conflicts -- and a flag given with the checkpoint's own value
changes nothing:

- :data:`HONOURED`: where and how the run computes and how it reports
  (``--device``, ``--gpu-step``, ``--quiet``, ``--json``) and where it writes
  (``--out``, ``--run-dir``). Left
  out, ``--out`` and ``--run-dir`` are the original run's (the checkpoint
  records them, relative to its own folder), not the current directory.
- ``--epochs N``: more than the checkpoint's extends the run
  (:meth:`~mlp_xp.train.Trainer.extend`: what is left of the learning-rate
  schedule is stretched to end at epoch N); fewer is refused.
- every other flag -- the network, the data, the optimizer and the rest of the
  recipe (:func:`fixed_settings`) -- is refused when it differs from the
  checkpoint's value, in one line naming each such flag and that value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelFileError
from ..layers import parse_hidden
from ..model import MLP
from ..train import Checkpoint
from .console import data_source, resolve

__all__ = ["HONOURED", "fixed_settings", "check_flags", "outputs_record", "outputs"]

#: Flags a resumed run takes as given: where it computes, reports and writes.
HONOURED = frozenset(
    {"device", "gpu_step", "quiet", "json", "out", "run_dir", "resume", "distributed", "stream"}
    | {"watchdog", "overwrite"}
)

_same: Callable[[Any], Any] = lambda value: value


def fixed_settings(ckpt: Checkpoint, data: dict) -> dict[str, tuple[Any, Callable[[Any], Any]]]:
    """Every fixed flag's destination -> (the checkpoint's value, how to compare a value).

    The comparison function maps both the typed value and the checkpoint's to
    one form (``"300, 100"`` and ``["300", "100"]`` are the same hidden layers;
    ``relu`` and ``relu,relu`` the same activations of a two-layer network).
    """
    model, cfg = ckpt.model, ckpt.config
    momentum = cfg.momentum if cfg.momentum is not None else ckpt.optimizer[0].get("momentum")

    def activations(value) -> list[str]:  # what the flag makes of this network's layers
        return MLP(1, model.hidden, 1, activation=value, task="regress", backend="cpu").activations

    return {
        "data": (data.get("source"), lambda v: os.path.normcase(data_source(str(v)))),
        "val_fraction": (data.get("val_fraction"), _same),
        "task": (model.task, _same),
        "positive": (data.get("positive"), _same),
        "hidden": (",".join(str(h) for h in model.hidden), lambda v: parse_hidden(v)),
        "activation": (",".join(model.activations), activations),
        "l2": (model.l2, _same),
        "dtype": (model.dtype, _same),
        "optimizer": (cfg.optimizer, _same),
        "momentum": (momentum, _same),
        "lr": (cfg.lr, _same),
        "schedule": (cfg.schedule, _same),
        "warmup": (cfg.warmup_epochs, _same),
        # auto decides by the data, which a resumed run keeps: it is what the run chose
        "augment": (cfg.augment, lambda v: cfg.augment if v == "auto" else v),
        "dropout": (cfg.dropout, _same),
        "ema": (cfg.ema, _same),
        "patience": (cfg.patience, _same),
        "batch_size": (cfg.batch_size, _same),
        "seed": (cfg.seed, _same),
    }


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def check_flags(args, ckpt: Checkpoint, data: dict) -> int | None:
    """The epochs to extend the run to (None: as it was), or a ConfigError naming
    every typed flag that would change the checkpoint's run, with its value there."""
    given: frozenset[str] = getattr(args, "given", frozenset())
    conflicts = []
    for dest, (held, canon) in fixed_settings(ckpt, data).items():
        if dest in given and canon(getattr(args, dest)) != canon(held):
            conflicts.append(f"{_flag(dest)} {getattr(args, dest)} (it has {_shown(held)})")
    epochs = ckpt.config.epochs
    if "epochs" in given and args.epochs < epochs:
        conflicts.append(f"--epochs {args.epochs} (it has {epochs}; runs extend, never shrink)")
    if conflicts:
        raise ConfigError(
            f"--resume continues the run the checkpoint holds: {', '.join(conflicts)} would "
            "change it; leave those flags out, or start a new run without --resume"
        )
    return args.epochs if "epochs" in given and args.epochs > epochs else None


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (so a moved run folder still works), else absolute."""
    path = path.resolve()
    try:
        return os.path.relpath(path, folder.resolve())
    except ValueError:  # Windows: on another drive there is no relative path
        return str(path)


def outputs_record(ckpt_path: Path, out: Path, run_dir: Path | None) -> dict:
    """What a checkpoint records of where its run writes (relative to its own folder)."""
    folder = ckpt_path.parent
    return {
        "model": _relative(out, folder),
        "run_dir": None if run_dir is None else _relative(run_dir, folder),
    }


def outputs(args, ckpt_path: Path, record: Any) -> tuple[Path, Path | None]:
    """``(out, run_dir)`` of a resumed run: the typed flags, else the original run's.

    A typed ``--run-dir`` without ``--out`` puts the model in it, as in a new run.
    A checkpoint that records nothing (written from Python) writes ``model.npz``
    next to itself.
    """
    folder = ckpt_path.parent
    if record is None:
        record = {"model": "model.npz", "run_dir": None}
    if not isinstance(record, dict) or not isinstance(record.get("model"), str):
        raise ModelFileError(f"{ckpt_path}: unusable record of the run's outputs: {record!r}")
    recorded_dir = record.get("run_dir")
    run_dir = (
        resolve(args.run_dir)
        if args.run_dir
        else (folder / recorded_dir if isinstance(recorded_dir, str) else None)
    )
    if args.out is not None:
        out = resolve(args.out)
    elif args.run_dir and run_dir is not None:
        out = run_dir / "model.npz"
    else:
        out = folder / record["model"]
    return Path(os.path.normpath(out)), None if run_dir is None else Path(os.path.normpath(run_dir))
