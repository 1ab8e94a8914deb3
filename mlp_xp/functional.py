"""Pure array math, written once against an array namespace ``xp``.

Every function takes the namespace as its first argument and uses only the
Python Array API standard, so it runs unchanged on NumPy, CuPy and
``array_api_strict``. Nothing here imports NumPy or CuPy.

Notation follows the course notes: a layer computes ``a = x W + b`` and
``x' = f(a)``; the output layer's pre-activation ``z`` goes into a loss that
returns both its value ``E`` and the output delta ``dE/dz``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .constraints import validate
from .errors import DataError

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "activation",
    "sigmoid",
    "softplus",
    "log_softmax",
    "softmax",
    "one_hot",
    "mix32",
    "unit_counters",
    "dropout_keep",
    "dropout_mask",
    "Loss",
    "LOSSES",
    "loss_for_task",
]


# --------------------------------------------------------------------------
# activations: f(a) and f'(a); the derivative may reuse the cached output f(a)
# --------------------------------------------------------------------------


class Activation(NamedTuple):
    """A hidden-layer nonlinearity: ``fn(xp, a)`` and ``grad(xp, a, out)``.

    ``grad`` returns f'(a); ``out`` is the already computed ``fn(xp, a)`` so that
    sigmoid and tanh need no second exponential. ``backprop`` gives
    ``dout * f'(a)``. ``fused`` is the same delta in a form that CuPy's kernel
    fusion compiles, for entries whose ``grad`` casts (fusion has no ``astype``).
    """

    name: str
    fn: Callable[[Any, Any], Any]
    grad: Callable[[Any, Any, Any], Any]
    fused: Callable[[Any, Any, Any, Any], Any] | None = None

    def backprop(self, xp, a, out, dout):
        """The layer's delta ``dout * f'(a)``."""
        return dout * self.grad(xp, a, out)

    def backprop_fused(self, xp, a, out, dout):
        """:meth:`backprop` inside a fused elementwise kernel."""
        return (self.fused or self.backprop)(xp, a, out, dout)


def sigmoid(xp, a):
    """Logistic function 1 / (1 + e^-a), finite for any float input.

    Uses e = exp(-|a|) <= 1, so nothing overflows: s = 1/(1+e) for a >= 0 and
    e/(1+e) for a < 0.
    """
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1.0, e) / (1.0 + e)


def softplus(xp, a):
    """ln(1 + e^a) computed as max(a, 0) + ln(1 + e^-|a|) (no overflow)."""
    return xp.maximum(a, 0.0) + xp.log1p(xp.exp(-xp.abs(a)))


def _linear(xp, a):
    return a


def _linear_grad(xp, a, out):
    return xp.ones_like(a)


def _sigmoid_grad(xp, a, out):
    return out * (1.0 - out)


def _tanh(xp, a):
    return xp.tanh(a)


def _tanh_grad(xp, a, out):
    return 1.0 - out * out


def _relu(xp, a):
    return xp.maximum(a, 0.0)


def _relu_grad(xp, a, out):
    return xp.astype(a > 0, a.dtype)


def _relu_fused(xp, a, out, dout):
    return xp.where(a > 0, dout, 0.0)  # on NumPy a cast and a multiply take half the time


def _softplus_grad(xp, a, out):
    return sigmoid(xp, a)


ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in (
        Activation("linear", _linear, _linear_grad, lambda xp, a, out, dout: dout),
        Activation("sigmoid", sigmoid, _sigmoid_grad),
        Activation("tanh", _tanh, _tanh_grad),
        Activation("relu", _relu, _relu_grad, _relu_fused),
        Activation("softplus", softplus, _softplus_grad),
    )
}


def activation(name: str) -> Activation:
    """Look up an activation by name (see :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[validate("activation", name)]


# --------------------------------------------------------------------------
# output functions
# --------------------------------------------------------------------------


def log_softmax(xp, z):
    """Row-wise ln softmax(z), with the row max subtracted (finite for |z| ~ 1e4)."""
    shifted = z - xp.max(z, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax(xp, z):
    """Row-wise softmax, y_k = e^{z_k} / sum_j e^{z_j}, computed stably."""
    return xp.exp(log_softmax(xp, z))


def one_hot(xp, labels, n_classes: int, dtype):
    """One-hot rows ``t[n, k] = (labels[n] == k)`` without index assignment."""
    classes = xp.arange(n_classes, dtype=labels.dtype, device=labels.device)
    return xp.astype(labels[:, None] == classes, dtype)


# --------------------------------------------------------------------------
# counter-based randomness: the same bits from any backend, any batch split
# --------------------------------------------------------------------------

MASK32 = 0xFFFFFFFF


def mix32(x):
    """A 32-bit integer hash of every element (T. Mueller's two-round multiply-xorshift).

    Written with operators only, so the same function runs on any array namespace and
    inside a fused GPU kernel. Every step is reduced modulo 2**32 and no product
    exceeds 2**59, so the bits are the same whether the integers are held as uint32
    (which wrap) or promoted to int64.
    """
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & MASK32
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & MASK32
    return x ^ (x >> 16)


def unit_counters(samples, units, total: int):
    """Counters ``sample * total + unit`` (mod 2**32) naming each (sample, hidden unit).

    ``samples`` (N, 1) and ``units`` (1, U) are unsigned integers; ``total`` is the
    number of hidden units of the network, so no two units of any samples share one.
    """
    return (samples * total + units) & MASK32


def dropout_keep(counters, key, rate: float):
    """Which units dropout keeps: ``mix32(counter ^ key)``, uniform on ``[0, 2**32)``, is
    at least ``rate * 2**32`` (operators only, like :func:`mix32`).

    Keyed by counters (a sample's index and a unit's), the draw does not depend on
    batch order or on how a batch is split.
    """
    return mix32(counters ^ key) >= int(round(rate * 2.0**32))


def dropout_mask(xp, counters, key: int, rate: float, dtype):
    """Inverted-dropout mask from integer ``counters``: 0 (dropped) or ``1/(1-rate)``."""
    return xp.astype(dropout_keep(counters, key, rate), dtype) * (1.0 / (1.0 - rate))


# --------------------------------------------------------------------------
# losses: each pairs an output function with its loss, and gives the value
# and the output delta dE/dz together (Nielsen's cost objects)
# --------------------------------------------------------------------------


class Loss:
    """An output layer plus its loss.

    ``value_and_delta(xp, z, t)`` returns the mean loss over the N rows and the
    delta ``dE/dz`` of that mean, i.e. ``(y - t) / N`` for all three losses here
    (each is the canonical pairing of output function and loss). Folding 1/N
    into the delta makes the weight gradient simply ``x^T delta``.
    """

    name = "loss"

    def output(self, xp, z):
        """The network's prediction y from the output pre-activation z."""
        raise NotImplementedError

    def value(self, xp, z, t):
        """Mean loss over the rows of z (no regularization term)."""
        raise NotImplementedError

    def value_and_delta(self, xp, z, t):
        n = z.shape[0]
        return self.value(xp, z, t), (self.output(xp, z) - t) / n

    def targets(self, xp, labels, n_outputs: int, dtype):
        """Encode labels as the target array t that matches z's shape."""
        raise NotImplementedError

    def check_targets(self, xp, y, n_outputs: int, name: str):
        """``y`` (labels or values, one entry or row per sample) in the form :meth:`targets`
        takes -- labels as (N,), an (N, 1) column included -- or, for targets this loss
        cannot learn from, one :class:`~mlp_xp.errors.DataError` naming ``name``.

        Reads a few reductions of ``y`` back to the host: call it once, at the door.
        """
        raise NotImplementedError


def dtype_kind(xp, dtype) -> str:
    """``"b"``, ``"i"``, ``"f"`` or ``"?"``, in any Array API namespace."""
    for kind, name in (("b", "bool"), ("i", "integral"), ("f", "real floating")):
        if xp.isdtype(dtype, name):
            return kind
    return "?"


def _numeric(xp, y, name: str, expected: str) -> str:
    """The dtype kind of numeric, finite ``y``; else a :class:`DataError`."""
    kind = dtype_kind(xp, y.dtype)
    if kind == "?":
        raise DataError(f"{name} are of dtype {y.dtype}; expected {expected}")
    if kind == "f" and not bool(xp.all(xp.isfinite(y))):
        raise DataError(f"{name} hold NaN or Inf; expected {expected}")
    return kind


def _one_per_row(y, name: str, expected: str):
    """``y`` as (N,): (N,) itself or an (N, 1) column."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{name} have shape {tuple(y.shape)}; expected {expected}")
    return y


class SoftmaxCrossEntropy(Loss):
    """Softmax output, E = -(1/N) sum_n sum_k t_nk ln y_nk (multi-class)."""

    name = "cross_entropy"

    def output(self, xp, z):
        return softmax(xp, z)

    def value(self, xp, z, t):
        return -xp.sum(t * log_softmax(xp, z)) / z.shape[0]

    def value_and_delta(self, xp, z, t):
        n = z.shape[0]
        logp = log_softmax(xp, z)
        return -xp.sum(t * logp) / n, (xp.exp(logp) - t) / n

    def targets(self, xp, labels, n_outputs, dtype):
        return one_hot(xp, labels, n_outputs, dtype)

    def check_targets(self, xp, y, n_outputs, name):
        expected = f"class labels 0..{n_outputs - 1}, one per row"
        if y.ndim == 2 and y.shape[1] == n_outputs and n_outputs > 1:
            raise DataError(
                f"{name} are one-hot rows of shape {tuple(y.shape)}; expected {expected} "
                "(the argmax of each row)"
            )
        y = _one_per_row(y, name, expected)
        kind = _numeric(xp, y, name, expected)
        if kind == "b":
            raise DataError(f"{name} are booleans; expected {expected}")
        if kind == "f" and not bool(xp.all(y == xp.round(y))):
            raise DataError(f"{name} hold values that are not whole numbers; expected {expected}")
        low, high = float(xp.min(y)), float(xp.max(y))
        if low < 0 or high > n_outputs - 1:
            raise DataError(f"{name} hold labels {low:g}..{high:g}; expected {expected}")
        return y if kind == "i" else xp.astype(y, xp.int64)  # 3.0 is class 3


class SigmoidBinaryCrossEntropy(Loss):
    """Sigmoid output, E = -(1/N) sum_n [t ln y + (1-t) ln(1-y)] (one unit, t in {0, 1}).

    Computed as mean(softplus(z) - t z), which never takes the log of 0.
    """

    name = "binary_cross_entropy"

    def output(self, xp, z):
        return sigmoid(xp, z)

    def value(self, xp, z, t):
        return xp.sum(softplus(xp, z) - t * z) / z.shape[0]

    def targets(self, xp, labels, n_outputs, dtype):
        return xp.reshape(xp.astype(labels, dtype), (-1, 1))

    def check_targets(self, xp, y, n_outputs, name):
        expected = "0 or 1 (False or True), one per row"
        y = _one_per_row(y, name, expected)
        if _numeric(xp, y, name, expected) == "b":
            return y
        if not bool(xp.all((y == 0) | (y == 1))):
            low, high = float(xp.min(y)), float(xp.max(y))
            raise DataError(f"{name} hold values other than 0 and 1 ({low:g}..{high:g}); "
                            f"expected {expected}")  # fmt: skip
        return y


class SquaredError(Loss):
    """Linear output, E = (1/2N) sum_n ||y_n - t_n||^2 (regression)."""

    name = "squared_error"

    def output(self, xp, z):
        return z

    def value(self, xp, z, t):
        r = z - t
        return xp.sum(r * r) / (2 * z.shape[0])

    def targets(self, xp, labels, n_outputs, dtype):
        t = xp.astype(labels, dtype)
        return xp.reshape(t, (-1, n_outputs))

    def check_targets(self, xp, y, n_outputs, name):
        expected = "one value per row, shape (N,)" if n_outputs == 1 else (
            f"{n_outputs} values per row, shape (N, {n_outputs})"
        )  # fmt: skip
        if n_outputs == 1:
            y = _one_per_row(y, name, expected)
        elif y.ndim != 2 or y.shape[1] != n_outputs:
            raise DataError(f"{name} have shape {tuple(y.shape)}; expected {expected}")
        if _numeric(xp, y, name, expected) == "b":
            raise DataError(f"{name} are booleans; expected {expected} (numbers)")
        return y


LOSSES: dict[str, Loss] = {
    "classify": SoftmaxCrossEntropy(),
    "binary": SigmoidBinaryCrossEntropy(),
    "regress": SquaredError(),
}


def loss_for_task(task: str) -> Loss:
    """The output+loss pair of a task: ``classify``, ``binary`` or ``regress``."""
    return LOSSES[validate("task", task)]
