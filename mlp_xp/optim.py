"""Gradient-descent optimizers, bound to their parameters when they are made.

As in scikit-learn's ``_stochastic_optimizers``, an optimizer is constructed on
the parameters it will update and allocates its state there and then (zeros on
the parameters' device, keyed like the parameters); :meth:`Optimizer.update_params`
applies one step in place. Nothing is allocated lazily, so the arrays a step
touches are the same from the first step to the last. State round-trips through
:meth:`Optimizer.state_dict` for checkpoints.

Each optimizer's step is one in-place rule over arrays, written with operators only
(:meth:`Optimizer.rule`). When the parameters are a model's flat buffer
(:class:`~mlp_xp.flat.FlatParams`) the state is flat too and the rule runs once, on
the whole buffer; otherwise once per parameter. The GPU fast step fuses the same rule
into one kernel.

Whether a step follows the loss of one sample, a mini-batch or the whole
training set is only the batch size the caller uses.
"""

from __future__ import annotations

import math
from typing import Any

from .arrays import Array
from .constraints import validate
from .errors import ConfigError, ModelFileError
from .flat import FlatParams

__all__ = ["Optimizer", "SGD", "Adam", "make_optimizer"]


class Optimizer:
    """Base class: ``update_params(grads)`` applies :meth:`rule` to every parameter, in place.

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
    slots: tuple[str, ...] = ()  # the state arrays each parameter has

    def __init__(self, params: dict, backend: Any, lr: float):
        self.params = params
        self.backend = backend
        self.lr = validate("lr", lr)
        self.t = 0  # steps taken

    def __repr__(self) -> str:
        settings = {"lr": self.lr, **self.hyperparameters(), "device": self.backend.spec}
        shown = ", ".join(f"{k}={v!r}" for k, v in settings.items() if k != "name")
        return f"{type(self).__name__}({shown})"

    def _allocate(self) -> None:
        """Zero state, shaped, typed and placed like the parameters (flat when they are)."""
        if not self.params:
            self.state: dict = {s: {} for s in self.slots}
            return
        xp = self.backend.xp
        with self.backend.scope():
            if isinstance(self.params, FlatParams):
                layout = self.params.layout
                self.state = {
                    s: layout.views(xp, xp.zeros_like(self.params.buffer)) for s in self.slots
                }
            else:
                self.state = {
                    s: {k: xp.zeros_like(p) for k, p in self.params.items()} for s in self.slots
                }

    def step_size(self, t: int, lr: float | None = None) -> float:
        """The host scalar the rule's ``lr`` is at step ``t`` (1-based), for rate ``lr``."""
        return self.lr if lr is None else lr

    def rule(self, p: Array, g: Array, *slots: Array, lr: float) -> None:
        """One step on array ``p`` with gradient ``g`` and state ``slots``, in place."""
        raise NotImplementedError

    def update_params(self, grads: dict) -> None:
        """Count one step and apply it at :attr:`lr` (for use on its own; a training step
        calls :meth:`apply`, and the run's state counts it)."""
        self.t += 1
        self.apply(grads, self.t, self.lr)

    def apply(self, grads: dict, t: int, lr: float) -> None:
        """Apply step ``t`` (1-based) at rate ``lr`` to every parameter, in place (once on
        the flat buffer if it is one); writes the parameters and slots, not ``t`` or ``lr``."""
        size = self.step_size(t, lr)
        with self.backend.scope():
            for p, g, *slots in self._groups(grads):
                self.rule(p, g, *slots, lr=size)

    def _groups(self, grads: dict) -> list:
        """``(param, grad, *state)`` arrays: the whole buffer, or one parameter at a time."""
        if isinstance(self.params, FlatParams) and self.params.same_layout(grads):
            return [(self.params.buffer, grads.buffer, *(self.state[s].buffer for s in self.slots))]
        return [
            (p, grads[k], *(self.state[s][k] for s in self.slots)) for k, p in self.params.items()
        ]

    def _state(self) -> dict:
        """The state arrays, keyed ``"<slot>/<param>"`` (e.g. ``velocity/W1``)."""
        return {f"{s}/{k}": a for s in self.slots for k, a in self.state[s].items()}

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
        with self.backend.scope():
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
        self.slots = ("velocity",) if self.momentum else ()
        self._allocate()

    @property
    def velocity(self) -> dict:
        return self.state.get("velocity", {})

    def rule(self, p: Array, g: Array, *slots: Array, lr: float) -> None:
        if not slots:
            p -= lr * g
            return
        (v,) = slots
        v *= self.momentum
        v -= lr * g
        p += v

    def hyperparameters(self) -> dict:
        return {"name": self.name, "momentum": self.momentum}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected first and second moments."""

    name = "adam"
    slots = ("m", "v")

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
        self._allocate()

    @property
    def m(self) -> dict:
        return self.state["m"]

    @property
    def v(self) -> dict:
        return self.state["v"]

    def step_size(self, t: int, lr: float | None = None) -> float:
        """``lr sqrt(1 - beta2^t) / (1 - beta1^t)``: the bias corrections folded in."""
        lr = self.lr if lr is None else lr
        return lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)

    def rule(self, p: Array, g: Array, m: Array, v: Array, *, lr: float) -> None:  # type: ignore[override]
        b1, b2 = self.beta1, self.beta2
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        p -= lr * m / (v**0.5 + self.eps)

    def hyperparameters(self) -> dict:
        return {"name": self.name, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


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
