"""Training: the hyperparameters, the loop, schedules, augmentation, resumable state.

Everything here drives the math core (:mod:`mlp_xp.model`, :mod:`mlp_xp.optim`)
and never the other way round.
"""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .fit import fit
from .history import Callback, History
from .loop import Trainer

__all__ = [
    "TrainConfig",
    "Trainer",
    "History",
    "Callback",
    "fit",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
]
