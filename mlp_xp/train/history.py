"""What a run records (:class:`History`) and the hooks it calls (:class:`Callback`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["History", "Callback"]


@dataclass
class History:
    """Per-epoch records of a run, as host floats.

    ``train_loss`` is the mean data loss of the epoch's steps plus the L2
    penalty at the end of the epoch. ``interrupted`` is True when the run was
    stopped (:meth:`Trainer.request_stop`, or Ctrl-C) before its last epoch.
    """

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)  # classify / binary tasks
    val_mse: list = field(default_factory=list)  # regress task
    seconds: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    interrupted: bool = False

    COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_mse", "seconds", "lr")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def rows(self) -> list[dict]:
        """One dict per epoch (for CSV logs); a column the task has not is ``None``."""
        columns = {k: getattr(self, k) for k in self.COLUMNS}
        return [
            {k: (v[i] if i < len(v) else None) for k, v in columns.items()}
            for i in range(len(self.epoch))
        ]


class Callback:
    """Hooks the loop calls; the default does nothing. All arguments are host values."""

    def on_epoch_start(self, trainer: Trainer, epoch: int, n_steps: int) -> None:
        """Before the first step of (1-based) ``epoch``, which has ``n_steps`` steps."""

    def on_step(self, trainer: Trainer, step: int) -> None:
        """After (1-based) ``step`` of the current epoch has been applied."""

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        """After an epoch, with its record (the keys of :attr:`History.COLUMNS`)."""
