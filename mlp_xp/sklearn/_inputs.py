"""Device arrays given to the estimators: checked on their device, never copied to the host.

Host data (NumPy, pandas, lists, PyTorch CPU tensors) goes through scikit-learn's own
validation. Rows that live on a device (CuPy arrays, CUDA PyTorch or JAX arrays through
DLPack) are checked where they are: their shape, the feature count, and one device
reduction for NaN and infinity; the network then trains on them in place. Targets are
small (one value or label per row): they are read to the host, where labels are encoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from ..arrays import locate
from ..backends import Backend, get_backend
from ..errors import DataError

__all__ = ["on_a_device", "backend_for", "device_rows", "host_targets"]


def on_a_device(X: Any) -> bool:
    """Whether ``X`` lives on a device rather than in host memory."""
    return locate(X).kind != "cpu"


def backend_for(device: str, X: Any) -> Backend:
    """The backend a new network trains on: ``device``, where ``"auto"`` follows GPU rows.

    ``device="auto"`` given rows on GPU ``N`` trains on GPU ``N``, where they are.
    """
    where = locate(X)
    if str(device).strip().lower() == "auto" and where.kind == "gpu":
        return get_backend(f"gpu:{where.index}")
    return get_backend(device)


def device_rows(est: Any, X: Any, backend: Backend, *, reset: bool, dtype: str) -> Any:
    """Rows ``X`` on ``backend``'s device (in place), checked as scikit-learn checks host rows.

    Sets ``n_features_in_`` when ``reset``, else compares with it; integer rows become
    ``dtype``. Another device's rows are a :class:`~mlp_xp.errors.BackendMismatchError`.
    """
    X = backend.accept(X, "X")  # rows on a device are this device's, or a mismatch
    shape = tuple(X.shape)
    if len(shape) != 2:
        raise DataError(f"Expected a 2D array of rows, got shape {shape}")
    if shape[0] < 1:
        raise DataError(
            f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 is required."
        )
    if reset:
        est.n_features_in_ = shape[1]
        est.__dict__.pop("feature_names_in_", None)
    elif shape[1] != est.n_features_in_:
        raise DataError(
            f"X has {shape[1]} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input."
        )
    xp = backend.xp
    with backend.scope():
        if X.dtype not in (xp.float32, xp.float64):
            X = xp.astype(X, backend.dtype(dtype))
        if not bool(xp.all(xp.isfinite(X))):  # one reduction, one scalar read back
            raise DataError("Input X contains NaN or infinity.")
    return X


def host_targets(
    y: Any, backend: Backend, n_rows: int, *, numeric: bool, multi: bool
) -> np.ndarray:
    """Targets ``y`` (wherever they are) as host NumPy, checked like scikit-learn's."""
    y = backend.get(backend.accept(y, "y"))
    if multi:
        y = check_array(y, ensure_2d=False, dtype="numeric" if numeric else None)
    else:
        y = column_or_1d(y, warn=True)
    check_consistent_length(np.empty((n_rows, 0)), y)
    return y
