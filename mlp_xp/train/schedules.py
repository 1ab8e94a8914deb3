"""Learning-rate schedules: a factor of the base rate for each global step.

A schedule is a plain host function ``factor(step) -> float``; the loop sets
``optimizer.lr = base_lr * factor(step)`` before each step (no device work).
:data:`SCHEDULES` maps each name to ``f(step, total) -> factor``:

``constant``  1 throughout
``step``      halves the rate at 50% and again at 75% of training
``cosine``    1 -> 0 along half a cosine
``onecycle``  linear warm-up from 0.1 to 1 over the first 30%, then cosine to 0
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..constraints import validate

__all__ = ["SCHEDULES", "make_schedule"]


def _half_cosine(done: float, span: float) -> float:
    """1 -> 0 as ``done`` goes from 0 to ``span``."""
    return 0.5 * (1.0 + math.cos(math.pi * min(done, span) / max(span, 1)))


def _onecycle(step: int, total: int) -> float:
    peak = max(1, int(0.3 * total))
    if step < peak:
        return 0.1 + 0.9 * step / peak
    return _half_cosine(step - peak, total - peak)


SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": lambda step, total: 1.0,
    "step": lambda step, total: (
        0.25 if step >= 0.75 * total else 0.5 if step >= 0.5 * total else 1.0
    ),
    "cosine": _half_cosine,
    "onecycle": _onecycle,
}


def make_schedule(name: str, total_steps: int, warmup_steps: float = 0.0) -> Callable[[int], float]:
    """The schedule ``name`` over ``total_steps`` steps, as ``factor(step)``.

    ``warmup_steps`` > 0 multiplies it by a linear warm-up from 0 to 1.
    """
    base = SCHEDULES[validate("schedule", name)]
    total = max(int(total_steps), 1)
    warm = float(warmup_steps)

    def factor(step: int) -> float:
        value = base(step, total)
        return value * min(1.0, (step + 1) / warm) if warm > 0 else value

    return factor
