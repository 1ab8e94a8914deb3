"""What one epoch does, decided on the host before it starts.

A run's randomness is keyed by ``(seed, epoch)`` and by each sample's index in the
training set, never by step or batch:

- the shuffle: ``default_rng((seed, epoch)).permutation(N)``;
- augmentation: coefficients for every sample of the training set, drawn in dataset
  order from ``default_rng((seed, epoch, AUGMENT_STREAM))`` (row ``i`` belongs to
  sample ``i``); the plan holds them in step order, so a step's rows are one slice;
- dropout: a 32-bit key per epoch; each mask bit is a hash of the key, the sample's
  index and the unit (:func:`~mlp_xp.train.dropout.dropout_masks`), made on the device;
- the learning rate of every step (the schedule).

So a plan is a pure function of ``(seed, epoch)``: a run resumed mid-epoch makes the
same plan and continues bit for bit, and what happens to a sample does not depend on
which batch, or which process, it lands in. A step needs one host-to-device copy per
epoch at most, none per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["EpochPlan", "make_plan", "AUGMENT_STREAM", "DROPOUT_STREAM"]

AUGMENT_STREAM = 0x61756731  # "aug1": the augmentation generator's sub-key
DROPOUT_STREAM = 0x64726F70  # "drop": the dropout key's sub-key


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's shuffle, augmentation coefficients, dropout key and learning rates."""

    epoch: int  # 0-based
    batch_size: int
    order: np.ndarray  # (N,) sample indices in the order the steps take them
    coefficients: np.ndarray | None  # (N, 2, K) augmentation coefficients, in step order
    dropout_key: int  # a 32-bit integer
    lrs: np.ndarray  # (steps,) the learning rate of each step

    @property
    def steps(self) -> int:
        return len(self.lrs)

    def rows(self, step: int) -> slice:
        """The stretch of :attr:`order` (and :attr:`coefficients`) step ``step`` takes."""
        start = step * self.batch_size
        return slice(start, min(start + self.batch_size, len(self.order)))

    def global_step(self, step: int) -> int:
        """Step ``step``'s 0-based index in the whole run (earlier epochs counted whole)."""
        return self.epoch * self.steps + step


def make_plan(
    seed: int,
    epoch: int,
    n: int,
    batch_size: int,
    augmenter=None,
    lr_at: Callable[[int], float] = lambda step: 0.0,
) -> EpochPlan:
    """The plan of (0-based) ``epoch`` for ``n`` samples; ``lr_at(s)`` is step ``s``'s rate."""
    order = np.random.default_rng((seed, epoch)).permutation(n)
    coefficients = None
    if augmenter is not None:
        table = augmenter.draw(np.random.default_rng((seed, epoch, AUGMENT_STREAM)), n)
        coefficients = table[order]
    key = int(np.random.SeedSequence([seed, epoch, DROPOUT_STREAM]).generate_state(1)[0])
    steps = -(-n // batch_size)
    lrs = np.array([lr_at(s) for s in range(steps)], dtype=np.float64)
    return EpochPlan(epoch, batch_size, order, coefficients, key, lrs)
