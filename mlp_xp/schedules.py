"""Learning-rate schedules: a factor of the base rate for each global step.

A schedule is a plain host function ``factor(step) -> float``; the loop sets
``optimizer.lr = base_lr * factor(step)`` before each step (no device work).
"""

from __future__ import annotations

import math
from typing import Callable

from .errors import ConfigError

__all__ = ["make_schedule", "SCHEDULES"]

SCHEDULES = ("constant", "step", "cosine", "onecycle")


def make_schedule(name: str, total_steps: int, warmup_steps: float = 0.0
                  ) -> Callable[[int], float]:
    """Build a schedule over ``total_steps`` steps.

    ``constant``  1 throughout
    ``step``      halves the rate at 50% and again at 75% of training
    ``cosine``    1 -> 0 along half a cosine
    ``onecycle``  linear warm-up from 0.1 to 1 over the first 30%, then cosine to 0

    ``warmup_steps`` > 0 adds a linear warm-up from 0 to the schedule's value.
    """
    total = max(int(total_steps), 1)
    if name == "constant":
        def base(step: int) -> float:
            return 1.0
    elif name == "step":
        def base(step: int) -> float:
            return 0.25 if step >= 0.75 * total else 0.5 if step >= 0.5 * total else 1.0
    elif name == "cosine":
        def base(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    elif name == "onecycle":
        peak = max(1, int(0.3 * total))

        def base(step: int) -> float:
            if step < peak:
                return 0.1 + 0.9 * step / peak
            return 0.5 * (1.0 + math.cos(math.pi * min(step - peak, total - peak)
                                         / max(total - peak, 1)))
    else:
        raise ConfigError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
    if warmup_steps <= 0:
        return base
    warm = float(warmup_steps)

    def warmed(step: int) -> float:
        return base(step) * min(1.0, (step + 1) / warm)

    return warmed
