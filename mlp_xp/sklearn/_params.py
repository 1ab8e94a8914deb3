"""The estimators' parameters: what each accepts, how it is checked, how it is documented."""

from __future__ import annotations

import math
import numbers

from .. import budget
from ..constraints import SKLEARN_ACTIVATIONS, validate
from ..errors import ConfigError
from ..layers import parse_hidden

__all__ = ["PARAMETERS_DOC", "ATTRIBUTES_DOC", "checked_settings", "image_shape", "estimate"]

#: Each parameter checked by fit and the constraints-table entry that checks it.
_CHECKED = {
    "solver": "solver",
    "alpha": "alpha",
    "batch_size": "sklearn_batch_size",
    "learning_rate_init": "learning_rate_init",
    "max_iter": "max_iter",
    "tol": "tol",
    "verbose": "verbose",
    "warm_start": "warm_start",
    "momentum": "momentum",
    "early_stopping": "early_stopping",
    "validation_fraction": "validation_fraction",
    "beta_1": "beta_1",
    "beta_2": "beta_2",
    "epsilon": "epsilon",
    "n_iter_no_change": "n_iter_no_change",
    "dtype": "dtype",
    "schedule": "schedule",
    "augment": "augment",
    "dropout": "dropout",
}

PARAMETERS_DOC = """
    hidden_layer_sizes : int, sequence or str, default=(100,)
        Units of each hidden layer. Items may also be maxout layers,
        ``"maxout:UNITS:PIECES"``, and a string is read as mlp_xp's ``--hidden``.
    activation : {"relu", "tanh", "logistic", "identity", "softplus"}, default="relu"
        Of the hidden layers (``"sigmoid"`` and ``"linear"`` are also accepted).
    solver : {"adam", "sgd"}, default="adam"
        ``"sgd"`` is heavy-ball momentum (scikit-learn's ``nesterovs_momentum=False``).
    alpha : float, default=1e-4
        L2 penalty with scikit-learn's meaning: ``(alpha / 2) ||W||^2`` added to
        each batch's summed loss, i.e. mlp_xp's ``l2 = alpha / batch_size``.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``.
    learning_rate_init : float, default=1e-3
    max_iter : int, default=200
        Epochs of each ``fit``.
    random_state : int, RandomState or None, default=None
        Draws the initial weights, the shuffles and the validation split.
    tol, n_iter_no_change : float, int, default=1e-4, 10
        Stop when the training loss (or, with early stopping, the validation
        score) has not improved by ``tol`` for more than ``n_iter_no_change`` epochs.
    verbose : bool, default=False
        Print the loss of every epoch.
    warm_start : bool, default=False
        Continue from the fitted weights at the next ``fit``.
    momentum : float, default=0.9
        For ``solver="sgd"``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for a classifier)
        and keep the weights of the best validation score.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        For ``solver="adam"``.
    device : str, default="auto"
        Where the network trains and predicts, any name :func:`~mlp_xp.get_backend` takes
        (``"cpu"``, ``"gpu:1"``, ``"torch:cpu"``, ``"mps"``, ...); ``"auto"`` is a usable
        GPU (CuPy's, then PyTorch's) when there is one, else the CPU. Changing it on a
        fitted estimator moves the network at its next use.
    dtype : {"float32", "float64"}, default="float32"
        The network's precision, whatever the input's.
    schedule : {"constant", "step", "cosine", "onecycle"}, default="constant"
        Learning-rate schedule over the ``max_iter`` epochs: each ``fit`` (warm or not)
        runs it from its start; ``partial_fit`` takes one epoch of it a call, then holds
        its last rate.
    augment : {"none", "shift", "affine", "elastic"}, default="none"
        Distortions of each training batch; needs square images as rows.
    dropout : float, default=0.0
        Inverted-dropout rate of the hidden layers.
"""

ATTRIBUTES_DOC = """
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names (a pandas DataFrame).
    loss_, loss_curve_ : float, list of float
        The training loss of the last epoch, and of every epoch.
    best_loss_ : float or None
        The lowest training loss (None with early stopping).
    validation_scores_, best_validation_score_ : list of float or None, float or None
        With early stopping: the held-out score of every epoch, and the best.
    n_iter_ : int
        Epochs run by the last ``fit`` (1 after ``partial_fit``).
    t_ : int
        Training samples seen.
    coefs_, intercepts_ : list of ndarray
        Host (NumPy) copies of the weights ``W(l)``, shape (n_in, n_out), and biases.
    n_layers_, n_outputs_ : int
    out_activation_ : str
    model_ : mlp_xp.MLP
        The network itself, on its device: ``save_model(path, est.model_)``,
        ``export_onnx(est.model_, path)``.
"""


def _hidden(value) -> list:
    if isinstance(value, numbers.Integral):
        value = [validate("hidden_layer_sizes", value)]
    elif not isinstance(value, str) and not hasattr(value, "__iter__"):
        validate("hidden_layer_sizes", value)  # raises, in the table's words
    return parse_hidden(value)


def checked_settings(est) -> dict:
    """Every parameter of ``est`` checked through :mod:`mlp_xp.constraints`, normalised."""
    s = {name: validate(entry, getattr(est, name)) for name, entry in _CHECKED.items()}
    s["hidden"] = _hidden(est.hidden_layer_sizes)
    name = validate("sklearn_activation", est.activation)
    s["activation"] = SKLEARN_ACTIVATIONS.get(name, name)
    return s


def image_shape(augment: str, n_features: int):
    side = math.isqrt(n_features)
    if augment != "none" and side * side != n_features:
        raise ConfigError(
            f"augment={augment!r} needs square images as rows, got {n_features} features; "
            "use augment='none'"
        )
    return (side, side)


def estimate(s: dict, shape: tuple, n_outputs: int) -> budget.Estimate:
    """What a new network for rows of ``shape`` and its training take (:mod:`mlp_xp.budget`),
    judged at ``fit`` before the network is built."""
    n, width = int(shape[0]), int(shape[1])
    batch = min(200 if s["batch_size"] == "auto" else s["batch_size"], n)
    return budget.estimate(
        width, s["hidden"], n_outputs, dtype=s["dtype"], optimizer=s["solver"],
        momentum=s["momentum"], batch_size=batch, n_samples=n,
    )  # fmt: skip
