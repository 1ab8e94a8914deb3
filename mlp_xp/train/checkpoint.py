"""Resumable training checkpoints: the model, the optimizer state and the loop's place.

A checkpoint is a model file (:mod:`mlp_xp.checkpoint`: pickle-free, checksummed,
atomic) of kind ``checkpoint`` that also holds the optimizer's state arrays
(``optim/...``), early stopping's best parameters so far (``best/...``), the
weights' moving average with ``ema`` (``average/buffer``) and, in
its metadata, the optimizer's settings and the loop's state: epoch, step, the
training config, the history so far, the key of the host random generator and
the loss and time of an interrupted epoch's first part. Resuming::

    ckpt = load_checkpoint("run/checkpoint.npz", backend="cpu")
    trainer = Trainer(ckpt.model, X, y, X_val, y_val, ckpt.config)
    trainer.restore(ckpt.optimizer, ckpt.state)
    trainer.run()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends import Backend
from ..checkpoint import build_model, param_arrays, read_file, write_file
from ..errors import MlpXpError, ModelFileError
from .config import TrainConfig

if TYPE_CHECKING:
    from ..model import MLP
    from .loop import Trainer

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint"]


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    ``optimizer`` is the ``(scalars, arrays)`` pair of
    :meth:`~mlp_xp.optim.Optimizer.state_dict` (arrays on the host); ``state``
    is :meth:`~mlp_xp.train.Trainer.state`.
    """

    model: MLP
    config: TrainConfig
    optimizer: tuple[dict, dict]
    state: dict


def save_checkpoint(path: str | os.PathLike, trainer: Trainer, **meta: Any) -> Path:
    """Save everything needed to resume ``trainer``: parameters, optimizer, loop state."""
    model = trainer.model
    scalars, _ = trainer.optimizer.state_dict()
    # the run's state (parameters, optimizer slots, moving average), then early stopping's
    # best epoch so far
    arrays = {**param_arrays(model), **trainer.train_state.host_arrays()}
    if trainer.best_params is not None:
        arrays.update(
            {f"best/{k}": v for k, v in model.backend.get(dict(trainer.best_params)).items()}
        )
    merged = {
        **model.meta,
        **meta,
        "model": model.config(),
        "optimizer": scalars,
        "state": trainer.state(),
    }
    return write_file(path, "checkpoint", merged, arrays)


def load_checkpoint(path: str | os.PathLike, backend: str | Backend | None = None) -> Checkpoint:
    """Load a checkpoint onto ``backend`` (independent of where it was written)."""
    meta, arrays = read_file(path)
    state = meta.get("state")
    if meta.get("kind") != "checkpoint" or not isinstance(state, dict):
        raise ModelFileError(f"{path}: not a resumable checkpoint (it is a plain model file)")
    try:
        # a checkpoint from before the weights' average existed ran without one
        config = TrainConfig.from_dict({"ema": 0.0, **state["config"]}).validate()
    except (KeyError, TypeError, MlpXpError) as exc:
        raise ModelFileError(
            f"{path}: the checkpoint's training config is unusable ({exc})"
        ) from None
    model = build_model(path, meta, arrays, backend)
    opt_arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("optim/")}
    best = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("best/")}
    if best:
        if set(best) != set(model.params):
            raise ModelFileError(
                f"{path}: the checkpoint's best parameters do not match its network"
            )
        state = {**state, "best_params": best}
    if "average/buffer" in arrays:  # host arrays beside the JSON state, for Trainer.restore
        state = {**state, "average": arrays["average/buffer"]}
    return Checkpoint(model, config, (meta.get("optimizer") or {}, opt_arrays), state)
