"""The hyperparameters of one training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..constraints import validate
from ..errors import ConfigError

__all__ = ["TrainConfig", "default_lr"]

#: The learning rate a run starts from when none is given, by optimizer, then by task.
#: SGD with momentum at 0.08 is the cross-validated digit recipe (``docs/accuracy.md``);
#: Adam normalises its steps, and its usual 1e-3 is what learns (0.08 lands 6 points
#: lower after 10 epochs); squared error on targets 0-9 has gradients ten times those of
#: cross-entropy, and at 0.08 it learns nothing or diverges, at 0.01 it learns.
DEFAULT_LR = {("adam", None): 1e-3, (None, "regress"): 0.01}


def default_lr(optimizer: str = "momentum", task: str = "classify") -> float:
    """The learning rate ``mlp-xp train`` uses for ``optimizer`` and ``task`` when
    ``--lr`` is not given (:data:`DEFAULT_LR`, else :attr:`TrainConfig.lr`'s 0.08)."""
    for key in ((optimizer, task), (optimizer, None), (None, task)):
        if key in DEFAULT_LR:
            return DEFAULT_LR[key]
    return TrainConfig.lr


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (all host Python values).

    The defaults are the digit recipe chosen by 5-fold cross-validation
    (``docs/accuracy.md``): SGD with momentum 0.9 at a constant lr 0.08 (``mlp-xp
    train`` starts Adam and regression elsewhere: :func:`default_lr`), batch 128,
    60 epochs, and the weights' moving average (decay 0.99) evaluated and saved in
    their place. ``augment="auto"`` (the default) distorts nothing here: a
    Trainer sees scaled arrays, not a data set; ``mlp-xp train`` decides it from the data
    (:func:`mlp_xp.train.autoaugment.choose_augment`: the digit distortions for
    handwriting), and so can a caller holding the images. Pass ``augment="affine"`` for
    handwritten digits from Python.

    ``momentum`` is ``None`` unless given: the optimizer's own default then
    applies (0 for ``sgd``, plain gradient descent; 0.9 for ``momentum``).
    ``gpu_step`` says how a CuPy model takes its steps: ``auto`` (the fast step of
    :mod:`mlp_xp.gpu` once it has checked itself against the generic one on this
    device, else the generic step), ``generic``, ``fast`` (an error if it cannot be
    used or fails its check), or ``graph`` (``fast``, also captured as one CUDA graph a
    step where the platform allows it; kernel by kernel, with a warning, where not). It
    changes speed, not results beyond float rounding.
    :meth:`validate` checks every field against :mod:`mlp_xp.constraints`.
    """

    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "momentum"
    lr: float = 0.08
    momentum: float | None = None
    seed: int = 0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    augment: str = "auto"
    dropout: float = 0.0
    ema: float = 0.99  # decay of the weights' moving average that replaces them (0 = off)
    patience: int = 0  # early stopping: epochs without improvement (0 = off)
    gpu_step: str = "auto"

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from keyword values, refusing unknown names with a ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown training setting(s) {', '.join(unknown)}: choose from "
                f"{', '.join(sorted(known))}"
            )
        return cls(**values)

    def validate(self) -> TrainConfig:
        """Check every field through the constraints table; store the normalised values."""
        for f in fields(self):
            setattr(self, f.name, validate(f.name, getattr(self, f.name)))
        if self.momentum is not None and self.optimizer == "adam":
            raise ConfigError("momentum applies to the sgd and momentum optimizers, not adam")
        return self

    def as_dict(self) -> dict:
        return asdict(self)
