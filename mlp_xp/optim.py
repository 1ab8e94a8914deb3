"""Gradient-descent optimizers, bound to their parameters when they are made.

As in scikit-learn's ``_stochastic_optimizers``, an optimizer is constructed on
the parameters it will update and allocates its state there and then (zeros on
the parameters' device, keyed like the parameters); :meth:`Optimizer.update_params`
applies one step in place and each optimizer only says what the step is in
``_get_updates``. Nothing is allocated lazily, so the arrays a step touches are
the same from the first step to the last. State round-trips through
:meth:`Optimizer.state_dict` for checkpoints.

Whether a step follows the loss of one sample, a mini-batch or the whole
training set is only the batch size the caller uses.
"""

from __future__ import annotations

import math
from typing import Any

from .constraints import validate
from .errors import ConfigError, ModelFileError

__all__ = ["Optimizer", "SGD", "Adam", "make_optimizer"]


class Optimizer:
    """Base class: ``update_params(grads)`` adds each update to its parameter, in place.

    Parameters
    ----------
    params : dict
        The parameter arrays to update, e.g. ``model.params``; they are changed
        in place, so the model sees every step.
    backend : Backend
        Where the parameters live (``model.backend``); the state is made there.
    lr : float
        Learning rate eta; a schedule may change it between steps.
    """

    name = "optimizer"

    def __init__(self, params: dict, backend: Any, lr: float):
        self.params = params
        self.backend = backend
        self.lr = validate("lr", lr)
        self.t = 0  # steps taken

    def _zeros(self) -> dict:
        """Zero state arrays shaped, typed and placed like the parameters."""
        return {k: self.backend.xp.zeros_like(p) for k, p in self.params.items()}

    def update_params(self, grads: dict) -> None:
        """Apply one step: ``params[k] += update[k]`` for every key, in place."""
        self.t += 1
        for key, update in self._get_updates(grads).items():
            self.params[key] += update

    def _get_updates(self, grads: dict) -> dict:
        raise NotImplementedError

    def _state(self) -> dict:
        """The state arrays, keyed ``"<slot>/<param>"`` (e.g. ``velocity/W1``)."""
        return {}

    def hyperparameters(self) -> dict:
        """The optimizer's name and settings besides ``lr`` (as recorded in model files)."""
        return {"name": self.name}

    def state_dict(self) -> tuple[dict, dict]:
        """``(scalars, arrays)``: JSON-able settings and the device state arrays."""
        return {**self.hyperparameters(), "lr": self.lr, "t": self.t}, self._state()

    def load_state_dict(self, scalars: dict, arrays: dict) -> None:
        """Restore :meth:`state_dict` output; host arrays are copied into the bound state."""
        if scalars.get("name") != self.name:
            raise ModelFileError(
                f"the checkpoint holds {scalars.get('name')!r} optimizer "
                f"state, this run uses {self.name!r}"
            )
        state = self._state()
        if set(arrays) != set(state):
            raise ModelFileError(f"optimizer state {sorted(arrays)} does not match {sorted(state)}")
        self.lr = float(scalars["lr"])
        self.t = int(scalars["t"])
        for key, value in self.backend.put(arrays).items():
            state[key][...] = value


class SGD(Optimizer):
    """Gradient descent ``W <- W - eta dE/dW``, with optional (heavy-ball) momentum.

    With momentum mu: ``v <- mu v - eta g``, ``W <- W + v``; with ``momentum=0``
    it is the plain rule of the course notes and keeps no state.
    """

    name = "sgd"

    def __init__(self, params: dict, backend: Any, lr: float = 0.05, momentum: float = 0.0):
        super().__init__(params, backend, lr)
        self.momentum = validate("momentum", momentum) or 0.0
        self.velocity = self._zeros() if self.momentum else {}

    def _get_updates(self, grads):
        if not self.momentum:
            return {k: -self.lr * g for k, g in grads.items()}
        for k, g in grads.items():
            v = self.velocity[k]
            v *= self.momentum
            v -= self.lr * g
        return self.velocity

    def hyperparameters(self):
        return {"name": self.name, "momentum": self.momentum}

    def _state(self):
        return {f"velocity/{k}": v for k, v in self.velocity.items()}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected first and second moments."""

    name = "adam"

    def __init__(
        self,
        params: dict,
        backend: Any,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ):
        super().__init__(params, backend, lr)
        self.beta1 = validate("beta1", beta1)
        self.beta2 = validate("beta2", beta2)
        self.eps = validate("eps", eps)
        self.m = self._zeros()
        self.v = self._zeros()

    def _get_updates(self, grads):
        b1, b2 = self.beta1, self.beta2
        step = self.lr * math.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        updates = {}
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            updates[k] = -step * m / (v**0.5 + self.eps)
        return updates

    def hyperparameters(self):
        return {"name": self.name, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _state(self):
        return {
            **{f"m/{k}": a for k, a in self.m.items()},
            **{f"v/{k}": a for k, a in self.v.items()},
        }


def make_optimizer(
    name: str, params: dict, backend: Any, lr: float, momentum: float | None = None
) -> Optimizer:
    """Build an optimizer by its command-line name, bound to ``params``.

    ``sgd`` is plain gradient descent ``W <- W - eta dE/dW`` unless a momentum
    is given; ``momentum`` is SGD with momentum 0.9 unless another is given;
    ``adam`` is Adam (a momentum is refused: Adam has its own moments).
    """
    name = validate("optimizer", name)
    if name == "adam":
        if momentum is not None:
            raise ConfigError("momentum applies to the sgd and momentum optimizers, not adam")
        return Adam(params, backend, lr)
    default = 0.9 if name == "momentum" else 0.0
    return SGD(params, backend, lr, default if momentum is None else momentum)
