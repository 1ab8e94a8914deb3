"""What each parameter accepts: one table, one error format.

As in scikit-learn's ``_parameter_constraints``, every hyperparameter of the
network, the optimizers, the training loop and the command line is declared
once in :data:`PARAMETERS`, with a label for people and the values it accepts.
:func:`validate` checks a value against its entry and returns it normalised (a
Python ``int``, ``float`` or name), or raises
:class:`~mlp_xp.errors.ConfigError` in the one format used everywhere::

    <label> must be <what it accepts>, got <value>

The command line builds its argument types from the same table
(:func:`argument_type`), so a bad flag and a bad keyword argument are refused
with the same sentence.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "Interval",
    "Options",
    "Boolean",
    "AnyOf",
    "Param",
    "PARAMETERS",
    "validate",
    "argument_type",
]


class _Rejected(Exception):
    """Raised by a constraint's ``convert`` when a value does not fit."""


@dataclass(frozen=True)
class Interval:
    """An ``int`` or finite ``float`` between ``low`` and ``high``.

    ``closed`` says which ends belong to the interval: ``"both"``, ``"left"``,
    ``"right"`` or ``"neither"``; a missing end is unbounded.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def convert(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _Rejected
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                raise _Rejected
            value = int(value)
        else:
            try:
                value = float(value)
            except OverflowError:  # an int past float's range, e.g. 10**400
                raise _Rejected from None
            if not math.isfinite(value):
                raise _Rejected
        low_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        high_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        if not (low_ok and high_ok):
            raise _Rejected
        return value

    def parse(self, text: str) -> int | float:
        """Convert command-line text (``"1e-3"``, ``"128"``) before checking it."""
        try:
            return self.kind(text.strip())
        except ValueError:
            raise _Rejected from None

    def __str__(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is None:
            op = ">=" if self.closed in ("both", "left") else ">"
            return f"{noun} {op} {self.low:g}"
        if self.low is None and self.high is not None:
            op = "<=" if self.closed in ("both", "right") else "<"
            return f"{noun} {op} {self.high:g}"
        if self.low is None:
            return noun
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of names (compared as given: names are lower case)."""

    values: tuple[str, ...]

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise _Rejected
        return value

    def parse(self, text: str) -> str:
        return text.strip()

    def __str__(self) -> str:
        if len(self.values) == 1:
            return repr(self.values[0])
        return "one of " + ", ".join(self.values)


@dataclass(frozen=True)
class Boolean:
    """``True`` or ``False`` (NumPy booleans too); never a number standing for one."""

    def convert(self, value: Any) -> bool:
        if type(value).__name__ not in ("bool", "bool_"):
            raise _Rejected
        return bool(value)

    def parse(self, text: str) -> bool:
        words = {"true": True, "1": True, "false": False, "0": False}
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise _Rejected from None

    def __str__(self) -> str:
        return "a boolean"


@dataclass(frozen=True)
class AnyOf:
    """A value that one of several constraints accepts (the first that does converts it)."""

    choices: tuple

    def convert(self, value: Any) -> Any:
        for choice in self.choices:
            try:
                return choice.convert(value)
            except _Rejected:
                continue
        raise _Rejected

    def parse(self, text: str) -> Any:
        for choice in self.choices:
            try:
                return choice.convert(choice.parse(text))
            except _Rejected:
                continue
        raise _Rejected

    def __str__(self) -> str:
        return " or ".join(str(c) for c in self.choices)


@dataclass(frozen=True)
class Param:
    """A parameter's label in messages, what it accepts, and whether ``None`` is allowed."""

    label: str
    accepts: Interval | Options | Boolean | AnyOf
    none_ok: bool = False


#: The names each choice-valued parameter accepts. The modules that implement
#: them (functional, optim, train.schedules, train.augment) register exactly
#: these names; ``tests/test_constraints.py`` keeps the two in step.
ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "softplus")
TASKS = ("classify", "binary", "regress")
OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
AUGMENTATIONS = ("auto", "none", "shift", "affine", "elastic")
DTYPES = ("float32", "float64")
#: scikit-learn's names for two activations, which the estimators also accept
SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid"}
GPU_STEPS = ("auto", "generic", "fast", "graph")

_POSITIVE_INT = Interval(int, 1)
_FRACTION = Interval(float, 0.0, 1.0, closed="left")

PARAMETERS: dict[str, Param] = {
    # the network (mlp_xp.model.MLP, mlp_xp.layers)
    "n_inputs": Param("n_inputs", _POSITIVE_INT),
    "n_outputs": Param("n_outputs", _POSITIVE_INT),
    "units": Param("a hidden layer size", _POSITIVE_INT),
    "pieces": Param("a maxout layer's pieces", Interval(int, 2)),
    "activation": Param("activation", Options(ACTIVATIONS)),
    "task": Param("task", Options(TASKS)),
    "l2": Param("l2", Interval(float, 0.0)),
    "dtype": Param("dtype", Options(DTYPES)),
    "seed": Param("seed", Interval(int, 0)),
    # the optimizers (mlp_xp.optim)
    "optimizer": Param("optimizer", Options(OPTIMIZERS)),
    "lr": Param("learning rate", Interval(float, 0.0, closed="neither")),
    "momentum": Param("momentum", _FRACTION, none_ok=True),
    "beta1": Param("beta1", _FRACTION),
    "beta2": Param("beta2", _FRACTION),
    "eps": Param("eps", Interval(float, 0.0, closed="neither")),
    # the training loop (mlp_xp.train.TrainConfig)
    "epochs": Param("epochs", _POSITIVE_INT),
    "batch_size": Param("batch size", _POSITIVE_INT),
    "schedule": Param("schedule", Options(SCHEDULES)),
    "warmup_epochs": Param("warm-up epochs", Interval(float, 0.0)),
    "augment": Param("augmentation", Options(AUGMENTATIONS)),
    "dropout": Param("dropout", _FRACTION),
    "ema": Param("ema decay", _FRACTION),
    "patience": Param("patience", Interval(int, 0)),
    "val_fraction": Param("validation fraction", Interval(float, 0.0, 1.0, closed="neither")),
    # the scikit-learn estimators (mlp_xp.sklearn): scikit-learn's names and meanings
    "hidden_layer_sizes": Param("hidden_layer_sizes", _POSITIVE_INT),
    "sklearn_activation": Param("activation", Options((*SKLEARN_ACTIVATIONS, *ACTIVATIONS))),
    "solver": Param("solver", Options(("sgd", "adam"))),
    "alpha": Param("alpha", Interval(float, 0.0)),
    "sklearn_batch_size": Param("batch_size", AnyOf((Options(("auto",)), _POSITIVE_INT))),
    "learning_rate_init": Param("learning_rate_init", Interval(float, 0.0, closed="neither")),
    "max_iter": Param("max_iter", _POSITIVE_INT),
    "tol": Param("tol", Interval(float, 0.0)),
    "n_iter_no_change": Param("n_iter_no_change", _POSITIVE_INT),
    "validation_fraction": Param(
        "validation_fraction", Interval(float, 0.0, 1.0, closed="neither")
    ),
    "beta_1": Param("beta_1", _FRACTION),
    "beta_2": Param("beta_2", _FRACTION),
    "epsilon": Param("epsilon", Interval(float, 0.0, closed="neither")),
    "early_stopping": Param("early_stopping", Boolean()),
    "warm_start": Param("warm_start", Boolean()),
    "verbose": Param("verbose", AnyOf((Boolean(), Interval(int, 0)))),
    "gpu_step": Param("gpu step", Options(GPU_STEPS)),
    # data parallelism (mlp_xp.parallel)
    "watchdog": Param("watchdog", Interval(float, 0.0, closed="neither")),
    # the command line
    "positive": Param("the positive digit", Interval(int, 0, 9), none_ok=True),
    "max_epochs": Param("max epochs", _POSITIVE_INT),
    "samples": Param("samples", _POSITIVE_INT),
    "repeats": Param("repeats", _POSITIVE_INT),
    "ranks": Param("ranks", _POSITIVE_INT),
    "to_accuracy": Param("target accuracy", Interval(float, 0.0, 1.0, closed="right")),
    "seeds": Param("seeds", _POSITIVE_INT),
}


def _message(param: Param, value: Any) -> str:
    accepts = f"{param.accepts} or None" if param.none_ok else str(param.accepts)
    return f"{param.label} must be {accepts}, got {value!r}"


def validate(name: str, value: Any) -> Any:
    """Check ``value`` against the table's entry ``name``; return it normalised.

    Raises
    ------
    ConfigError
        ``"<label> must be <what it accepts>, got <value>"``.
    """
    param = PARAMETERS[name]
    if value is None and param.none_ok:
        return None
    try:
        return param.accepts.convert(value)
    except _Rejected:
        raise ConfigError(_message(param, value)) from None


def argument_type(name: str) -> Callable[[str], Any]:
    """An ``argparse`` ``type=`` that parses and validates a flag through the table."""
    import argparse

    param = PARAMETERS[name]

    def parse(text: str) -> Any:
        try:
            return param.accepts.convert(param.accepts.parse(text))
        except _Rejected:
            raise argparse.ArgumentTypeError(_message(param, text)) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse
