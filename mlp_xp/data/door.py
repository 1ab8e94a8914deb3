"""The door every training and held-out set passes before it reaches a device.

:func:`check_data` is called by :class:`~mlp_xp.train.Trainer` (so by :func:`~mlp_xp.fit`,
the scikit-learn estimators and ``mlp-xp train`` alike) before anything is copied: the
inputs against the model (rows, width, dtype, finiteness), the targets against the inputs
(one per row) and against the model's output (:meth:`~mlp_xp.functional.Loss.check_targets`:
label range for a classifier, 0/1 for a binary output, width for regression), and the
held-out pair against each other and the model. Each refusal is one
:class:`~mlp_xp.errors.DataError` naming the array, what it holds and what was expected.

Host data is checked on the host; an array already on the model's device is checked where
it is, with a few reductions read back once. This matters most on a GPU: CuPy's ``take``
wraps an out-of-range index instead of raising, so a label past the last class, or targets
that do not pair with the rows, would otherwise train silently on the wrong data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import ArrayLike
from ..errors import DataError
from ..functional import dtype_kind
from .shards import Shards, Subset

__all__ = ["check_data", "check_targets"]


def _as_checked(backend, a: ArrayLike, name: str) -> tuple[Any, Any]:
    """``a`` where it can be checked (this device's array, or host NumPy) and its namespace."""
    if isinstance(a, (Shards, Subset)):  # rows read lazily: uint8 pixels, nothing to scan
        return a, None
    a = backend.accept(a, name)
    return a, (backend.xp if backend.owns(a) else np)


def _check_inputs(model, X: ArrayLike, name: str) -> Any:
    """``X`` is (N, n_inputs), N > 0, numeric and finite; returns it as accepted (this
    device's array, host NumPy, or the lazily read rows it was)."""
    X, xp = _as_checked(model.backend, X, name)
    shape = tuple(X.shape)
    if len(shape) != 2 or shape[1] != model.n_inputs:
        raise DataError(f"{name} have shape {shape}; the model takes (N, {model.n_inputs}) rows")
    if shape[0] == 0:
        raise DataError(f"{name} are empty (0 rows)")
    if xp is None:
        return X
    kind = dtype_kind(xp, X.dtype)
    if kind == "?":
        raise DataError(f"{name} are of dtype {X.dtype}; expected numbers")
    with model.backend.scope():  # a device array is reduced on its own device
        if kind == "f" and not bool(xp.all(xp.isfinite(X))):
            raise DataError(f"{name} hold NaN or Inf")
    return X


def check_targets(model, y: ArrayLike, n_rows: int, name: str, inputs: str = "the inputs"):
    """``y`` pairs with ``n_rows`` rows of ``inputs`` and is what ``model``'s output learns
    from; returns it as the loss takes it (labels as (N,); host data stays on the host)."""
    y, xp = _as_checked(model.backend, y, name)
    rows = int(y.shape[0]) if len(y.shape) else 0
    if rows != n_rows:
        raise DataError(f"{name} have {rows} rows but {inputs} have {n_rows}; expected one a row")
    with model.backend.scope():
        return model.loss.check_targets(xp, y, model.n_outputs, name)


def check_data(
    model,
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
) -> tuple[Any, Any, Any, Any]:
    """Refuse, before anything reaches a device, data ``model`` cannot train on.

    Returns ``(X, y, X_val, y_val)`` as accepted (read once: host data as NumPy, device
    arrays in place), the targets as the loss takes them (:func:`check_targets`).
    """
    X = _check_inputs(model, X, "training inputs X")
    y = check_targets(model, y, X.shape[0], "training targets y", "training inputs X")
    if (X_val is None) != (y_val is None):
        given = "X_val" if y_val is None else "y_val"
        raise DataError(f"the held-out split needs X_val and y_val together; got only {given}")
    if X_val is not None:
        X_val = _check_inputs(model, X_val, "held-out inputs X_val")
        held_out = ("held-out targets y_val", "held-out inputs X_val")
        y_val = check_targets(model, y_val, X_val.shape[0], *held_out)
    return X, y, X_val, y_val
