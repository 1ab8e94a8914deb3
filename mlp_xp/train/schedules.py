"""Learning-rate schedules: a factor of the base rate for each global step.

A schedule is a plain host function ``factor(step) -> float``; the loop sets
``optimizer.lr = base_lr * factor(step)`` before each step (no device work).
:data:`SCHEDULES` maps each name to ``f(step, total) -> factor``:

``constant``  1 throughout
``step``      halves the rate at 50% and again at 75% of training
``cosine``    1 -> 0 along half a cosine
``onecycle``  linear warm-up from 0.1 to 1 over the first 30%, then cosine to 0

A run's :class:`Plan` is its schedule over its steps. A run extended while it
is under way (:meth:`~mlp_xp.train.Trainer.extend`, ``train --resume CKPT
--epochs N``) keeps its schedule's shape: :func:`stretch` spreads the part not
yet run over the longer run, so the rate goes on from where it was, without a
jump, and reaches the schedule's end at the new last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..constraints import validate
from ..errors import ConfigError

__all__ = ["SCHEDULES", "make_schedule", "stretch", "Plan"]


def _half_cosine(done: float, span: float) -> float:
    """1 -> 0 as ``done`` goes from 0 to ``span``."""
    return 0.5 * (1.0 + math.cos(math.pi * min(done, span) / max(span, 1)))


def _onecycle(step: float, total: int) -> float:
    peak = max(1, int(0.3 * total))
    if step < peak:
        return 0.1 + 0.9 * step / peak
    return _half_cosine(step - peak, total - peak)


SCHEDULES: dict[str, Callable[[float, int], float]] = {
    "constant": lambda step, total: 1.0,
    "step": lambda step, total: (
        0.25 if step >= 0.75 * total else 0.5 if step >= 0.5 * total else 1.0
    ),
    "cosine": _half_cosine,
    "onecycle": _onecycle,
}


def make_schedule(
    name: str, total_steps: int, warmup_steps: float = 0.0
) -> Callable[[float], float]:
    """The schedule ``name`` over ``total_steps`` steps, as ``factor(step)``.

    ``warmup_steps`` > 0 multiplies it by a linear warm-up from 0 to 1.
    """
    base = SCHEDULES[validate("schedule", name)]
    total = max(int(total_steps), 1)
    warm = float(warmup_steps)

    def factor(step: float) -> float:
        value = base(step, total)
        return value * min(1.0, (step + 1) / warm) if warm > 0 else value

    return factor


def stretch(
    factor: Callable[[float], float], start: int, old_total: int, new_total: int
) -> Callable[[float], float]:
    """``factor`` with what is left of it after step ``start`` stretched to ``new_total`` steps.

    Steps before ``start`` keep their factors. From ``start`` on, step ``s`` gets
    the factor ``factor`` had at ``start + (s - start) (old_total - start) /
    (new_total - start)``: the same value at ``start`` (no jump), the same shape
    (a step schedule's drops, a cosine's curve) over the remaining steps, and the
    same end, at ``new_total`` instead of ``old_total``.
    """
    if not 0 <= start < old_total < new_total:
        raise ValueError(f"cannot stretch steps {start}..{old_total} to end at {new_total}")
    ratio = (old_total - start) / (new_total - start)

    def stretched(step: float) -> float:
        return factor(step if step < start else start + (step - start) * ratio)

    return stretched


class Plan:
    """A run's learning-rate factor per global step: ``plan(step) -> float``.

    The schedule ``name`` over ``total_steps`` (with ``warmup_steps`` of linear
    warm-up), then each of ``stretches`` -- ``[start, old_total, new_total]``
    triples, as :meth:`extend` appends them and checkpoints store them -- applied
    in order. With stretches, ``total_steps`` must be the last one's new total.
    """

    def __init__(self, name: str, total_steps: int, warmup_steps: float = 0.0, stretches=()):
        self.total = int(total_steps)
        try:
            self.stretches = [[int(s[0]), int(s[1]), int(s[2])] for s in stretches]
            planned = self.stretches[0][1] if self.stretches else self.total
            self._factor = make_schedule(name, planned, warmup_steps)
            for s in self.stretches:
                self._factor = stretch(self._factor, *s)
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"unusable schedule stretches {stretches!r}") from None
        if self.stretches and self.stretches[-1][2] != self.total:
            raise ConfigError(
                f"the run was planned for {self.stretches[-1][2]} steps, this one has "
                f"{self.total}: resume it with the same data, batch size and epochs"
            )

    def __call__(self, step: float) -> float:
        return self._factor(step)

    def extend(self, start: int, new_total: int) -> None:
        """Stretch what is left after step ``start`` to end at ``new_total`` steps."""
        if start >= self.total:
            raise ConfigError(
                "the run has finished its schedule; extend a run before it ends, "
                "or train the model further in a new run"
            )
        if new_total <= self.total:
            raise ConfigError(
                f"a run can only be extended: {new_total} steps are not more than its {self.total}"
            )
        self.stretches.append([int(start), self.total, int(new_total)])
        self._factor = stretch(self._factor, start, self.total, new_total)
        self.total = int(new_total)
