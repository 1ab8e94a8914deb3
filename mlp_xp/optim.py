"""Gradient-descent optimizers.

As in scikit-learn's ``_stochastic_optimizers``, :meth:`Optimizer.update_params`
applies the steps in place and each optimizer only says what the step is in
``_get_updates``. Optimizer state lives on the device as arrays keyed like the
parameters, and round-trips through :meth:`state_dict` for checkpoints.

Whether a step follows the loss of one sample, a mini-batch or the whole
training set is only the batch size the caller uses.
"""

from __future__ import annotations

import math

from .errors import ConfigError

__all__ = ["Optimizer", "SGD", "Adam", "make_optimizer", "OPTIMIZERS"]


def _positive(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not (value > 0.0) or math.isinf(value):
        raise ConfigError(f"{what} must be a finite number > 0, got {value!r}")
    return value


def _fraction(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not (0.0 <= value < 1.0):
        raise ConfigError(f"{what} must be in [0, 1), got {value!r}")
    return value


def _zeros_like(a):
    """Zeros of a's shape, dtype and device, without knowing a's namespace."""
    return 0.0 * a


class Optimizer:
    """Base class: ``update_params(params, grads)`` adds each update in place.

    Attributes
    ----------
    lr : float
        Learning rate eta; a schedule may change it between steps.
    """

    name = "optimizer"

    def __init__(self, lr: float):
        self.lr = _positive(lr, "learning rate")
        self.t = 0  # steps taken

    def update_params(self, params: dict, grads: dict) -> None:
        """Apply one step: ``params[k] += update[k]`` for every key, in place."""
        self.t += 1
        for key, update in self._get_updates(params, grads).items():
            params[key] += update

    def _get_updates(self, params: dict, grads: dict) -> dict:
        raise NotImplementedError

    def state_dict(self) -> tuple[dict, dict]:
        """``(scalars, arrays)``: JSON-able settings and the device state arrays."""
        return {"name": self.name, "lr": self.lr, "t": self.t}, {}

    def load_state_dict(self, scalars: dict, arrays: dict, backend) -> None:
        """Restore :meth:`state_dict` output; host arrays are moved to ``backend``."""
        self.lr = float(scalars["lr"])
        self.t = int(scalars["t"])


class SGD(Optimizer):
    """Gradient descent ``W <- W - eta dE/dW``, with optional (heavy-ball) momentum.

    With momentum mu: ``v <- mu v - eta g``, ``W <- W + v``.
    """

    name = "sgd"

    def __init__(self, lr: float = 0.05, momentum: float = 0.0):
        super().__init__(lr)
        self.momentum = _fraction(momentum, "momentum")
        self.velocity: dict = {}

    def _get_updates(self, params, grads):
        if not self.momentum:
            return {k: -self.lr * g for k, g in grads.items()}
        if not self.velocity:
            self.velocity = {k: -self.lr * g for k, g in grads.items()}
        else:
            for k, g in grads.items():
                v = self.velocity[k]
                v *= self.momentum
                v -= self.lr * g
        return self.velocity

    def state_dict(self):
        scalars, _ = super().state_dict()
        scalars["momentum"] = self.momentum
        return scalars, {f"velocity/{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, scalars, arrays, backend):
        super().load_state_dict(scalars, arrays, backend)
        self.momentum = float(scalars["momentum"])
        self.velocity = {k.split("/", 1)[1]: backend.asarray(v) for k, v in arrays.items()
                         if k.startswith("velocity/")}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected first and second moments."""

    name = "adam"

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__(lr)
        self.beta1 = _fraction(beta1, "beta1")
        self.beta2 = _fraction(beta2, "beta2")
        self.eps = _positive(eps, "eps")
        self.m: dict = {}
        self.v: dict = {}

    def _get_updates(self, params, grads):
        if not self.m:
            self.m = {k: _zeros_like(g) for k, g in grads.items()}
            self.v = {k: _zeros_like(g) for k, g in grads.items()}
        b1, b2 = self.beta1, self.beta2
        step = self.lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        updates = {}
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            updates[k] = -step * m / (v ** 0.5 + self.eps)
        return updates

    def state_dict(self):
        scalars, _ = super().state_dict()
        scalars.update(beta1=self.beta1, beta2=self.beta2, eps=self.eps)
        arrays = {f"m/{k}": v for k, v in self.m.items()}
        arrays.update({f"v/{k}": v for k, v in self.v.items()})
        return scalars, arrays

    def load_state_dict(self, scalars, arrays, backend):
        super().load_state_dict(scalars, arrays, backend)
        self.beta1, self.beta2, self.eps = (float(scalars[k]) for k in ("beta1", "beta2", "eps"))
        self.m = {k[2:]: backend.asarray(a) for k, a in arrays.items() if k.startswith("m/")}
        self.v = {k[2:]: backend.asarray(a) for k, a in arrays.items() if k.startswith("v/")}


OPTIMIZERS = ("sgd", "momentum", "adam")


def make_optimizer(name: str, lr: float, momentum: float = 0.9) -> Optimizer:
    """Build an optimizer by its CLI name.

    ``sgd`` is plain gradient descent unless ``momentum`` > 0 is given
    explicitly by the caller; ``momentum`` is SGD with ``momentum`` (default 0.9);
    ``adam`` is Adam.
    """
    if name == "sgd":
        return SGD(lr, momentum)
    if name == "momentum":
        return SGD(lr, momentum if momentum else 0.9)
    if name == "adam":
        return Adam(lr)
    raise ConfigError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
