"""What one ``mlp-xp train`` run is, before any data is read: the network, the recipe, the
data it names and where it writes, made from the flags or from a checkpoint (``--resume``).

The command builds the same objects the Python API takes (:class:`~mlp_xp.MLP`,
:class:`~mlp_xp.TrainConfig`); a data-parallel rank builds the same ones on its device.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import budget
from ..backends import Backend
from ..data import DIGITS, Normalization
from ..errors import ConfigError, ModelFileError
from ..model import MLP
from ..train import TrainConfig, load_checkpoint
from ..train.autoaugment import AugmentChoice
from ..train.config import default_lr
from . import resume
from .console import data_source, resolve

__all__ = ["RunSpec", "from_flags", "from_checkpoint", "N_OUTPUTS"]

N_OUTPUTS = {"classify": 10, "binary": 1, "regress": 1}


@dataclass
class RunSpec:
    """A train run: what it trains, on which data, and where it writes."""

    model: MLP
    config: TrainConfig
    data: dict  # source, val_fraction, split_seed, task, positive: the model file's record
    normalization: Normalization
    out: Path
    run_dir: Path | None
    choice: AugmentChoice | None = None  # None until the data decides "auto"
    checkpoint: Any = None  # a resumed run's checkpoint
    extend_to: int | None = None  # a resumed run's longer --epochs

    @property
    def checkpoint_path(self) -> Path:
        """Where Ctrl-C saves the run: the run folder's, or beside the model."""
        if self.run_dir is not None:
            return self.run_dir / "checkpoint.npz"
        return self.out.with_suffix(".ckpt.npz")


def from_flags(args, backend: Backend) -> RunSpec:
    """A new run, as the flags describe it."""
    _check_combinations(args)
    run_dir = resolve(args.run_dir) if args.run_dir is not None else None
    default_out = run_dir / "model.npz" if run_dir else Path("model.npz")
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr if args.lr is not None else default_lr(args.optimizer, args.task),
        momentum=args.momentum,
        seed=args.seed,
        schedule=args.schedule,
        warmup_epochs=args.warmup,
        augment=args.augment,  # "auto" is decided from the data once it is read
        dropout=args.dropout,
        ema=args.ema,
        patience=args.patience,
        gpu_step=args.gpu_step,
    ).validate()
    layers = argparse.Namespace(n_inputs=784, hidden=args.hidden, n_outputs=N_OUTPUTS[args.task],
                                dtype=args.dtype)  # fmt: skip
    estimate = budget.for_training(layers, config, evaluates=True)  # before anything is allocated
    budget.check(estimate, backend, budget.CLI_FLAGS)
    model = MLP(784, args.hidden, N_OUTPUTS[args.task], activation=args.activation,
                task=args.task, l2=args.l2, backend=backend, dtype=args.dtype,
                seed=args.seed)  # fmt: skip
    data = {
        "source": data_source(args.data),
        "val_fraction": args.val_fraction,
        "split_seed": args.seed,
        "task": args.task,
        "positive": args.positive,
    }
    out = resolve(args.out) if args.out is not None else default_out
    return RunSpec(model, config, data, DIGITS, out, run_dir)


def _check_combinations(args) -> None:
    """Flags that are each valid but say nothing, or nonsense, together: one line each."""
    given: frozenset[str] = getattr(args, "given", frozenset())
    if args.positive is not None and args.task != "binary":
        raise ConfigError(f"--positive applies to --task binary only, got --task {args.task}")
    for flag, value in (("--out", args.out), ("--run-dir", args.run_dir)):
        if value is not None and not value.strip():
            raise ConfigError(f"{flag} is empty: give a path")
    if args.warmup > args.epochs:
        raise ConfigError(
            f"--warmup {args.warmup:g} epochs is longer than the run (--epochs {args.epochs}): "
            "the learning rate would never reach --lr; shorten --warmup or train longer"
        )
    if "watchdog" in given and not getattr(args, "distributed", False):
        raise ConfigError("--watchdog applies to --distributed runs only")
    lr = args.lr if args.lr is not None else default_lr(args.optimizer, args.task)
    if args.optimizer != "adam" and lr * args.l2 >= 1 and args.l2 >= 1:  # l2 is the culprit
        raise ConfigError(
            f"--l2 {args.l2:g} with --lr {lr:g}: the weight penalty alone scales every weight "
            f"by 1 - lr*l2 = {1 - lr * args.l2:.3g} a step, so the run cannot converge; "
            "use a much smaller --l2 (the default is 1e-4)"
        )


def _as_run(augment: str) -> dict:
    """The record of a checkpoint written before runs recorded their augmentation."""
    return {"augment": augment, "requested": augment, "dataset": None, "reason": "as recorded"}


def from_checkpoint(args, backend: Backend) -> RunSpec:
    """A run resumed from ``--resume``: its network, recipe, data and outputs as recorded."""
    path = resolve(args.resume)
    checkpoint = load_checkpoint(path, backend)
    model, config = checkpoint.model, checkpoint.config
    config.gpu_step = args.gpu_step  # how this device steps, like --device: ours to choose
    estimate = budget.for_training(model, config, evaluates=True)  # this device may be smaller
    budget.check(estimate, backend, budget.CLI_FLAGS, built=True)
    data = model.meta.get("data")
    if not isinstance(data, dict):
        raise ModelFileError(
            f"{path}: the checkpoint does not record its data (it was not written by "
            "mlp-xp train); resume it from Python with Trainer.restore"
        )
    extend_to = resume.check_flags(args, checkpoint, data)
    out, run_dir = resume.outputs(args, path, model.meta.pop("outputs", None))
    normalization = Normalization.from_meta(model.meta.get("normalization"))
    choice = AugmentChoice(**model.meta.get("augmentation", _as_run(config.augment)))
    return RunSpec(model, config, data, normalization, out, run_dir, choice, checkpoint, extend_to)
