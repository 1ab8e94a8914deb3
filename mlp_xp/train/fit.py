"""``fit``: train a model in one call (a :class:`~mlp_xp.train.loop.Trainer` underneath)."""

from __future__ import annotations

from typing import Any

from ..arrays import ArrayLike
from ..model import MLP
from ..optim import Optimizer
from .config import TrainConfig
from .history import Callback, History
from .loop import Trainer

__all__ = ["fit"]


def fit(
    model: MLP,
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
    *,
    callbacks: list[Callback] | None = None,
    optimizer: str | Optimizer | None = "momentum",
    **config: Any,
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Parameters
    ----------
    model : MLP
    X : array, shape (N, n_inputs)
        Training inputs: NumPy, pandas, or any DLPack array (PyTorch, JAX, CuPy). An
        array already on the model's device is used in place; host data is moved once.
    y : array, shape (N,) or (N, n_outputs)
        Class labels (classify), 0/1 (binary) or targets (regress).
    X_val, y_val : arrays, optional
        Held-out split, evaluated after each epoch (and used by early stopping).
    optimizer : {"sgd", "momentum", "adam"} or Optimizer
        A name, or an optimizer bound to ``model.params``.
    callbacks : list of Callback, optional
    **config
        Other :class:`TrainConfig` fields: ``epochs``, ``batch_size``, ``lr``,
        ``momentum``, ``seed``, ``schedule``, ``warmup_epochs``, ``augment``,
        ``dropout``, ``ema``, ``patience``, ``gpu_step``. With ``ema`` (0.99 by
        default; 0 turns it off) the model ends holding the weights' moving average;
        the history's per-epoch figures are those of the raw weights.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, once the step in flight has finished: the model holds the
        parameters after that step.

    Examples
    --------
    >>> history = fit(model, X_train, y_train, X_val, y_val, epochs=5)  # doctest: +SKIP
    """
    if isinstance(optimizer, str):
        config["optimizer"], optimizer = optimizer, None
    cfg = TrainConfig.from_dict(config).validate()
    return Trainer(model, X, y, X_val, y_val, cfg, optimizer=optimizer, callbacks=callbacks).run()
