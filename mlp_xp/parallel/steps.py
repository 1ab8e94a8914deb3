"""The data-parallel steps: this rank's share of each global batch, summed over the ranks.

:class:`ShardPlan` gives rank ``r`` of ``N`` the contiguous stretch ``[r b / N, (r + 1) b /
N)`` of every global batch of ``b`` rows; :class:`ShardedStep` is the generic step on that
share, its gradient scaled by the share's size and summed in one allreduce;
:class:`StreamedStep` reads its rows from host memory maps, one copy a step
(:mod:`mlp_xp.parallel.stream`).
"""

from __future__ import annotations

import dataclasses

from ..train.lookahead import spare_core
from ..train.plan import EpochPlan
from ..train.step import EpochLosses, GenericStep
from .world import World

__all__ = ["share", "ShardPlan", "ShardedStep", "StreamedStep"]


def share(start: int, stop: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s contiguous share of rows ``[start, stop)``, split as evenly as can be."""
    n = stop - start
    return slice(start + rank * n // size, start + (rank + 1) * n // size)


@dataclasses.dataclass(frozen=True)
class ShardPlan(EpochPlan):
    """An :class:`EpochPlan` whose :meth:`rows` are this rank's share of each global batch."""

    rank: int = 0
    ranks: int = 1

    def global_rows(self, step: int) -> slice:
        return EpochPlan.rows(self, step)

    def rows(self, step: int) -> slice:
        whole = self.global_rows(step)
        return share(whole.start, whole.stop, self.rank, self.ranks)


class ShardedStep(GenericStep):
    """The generic step on this rank's share, its gradient summed over the ranks."""

    name = "generic (data-parallel)"

    def __init__(self, world: World, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.world = world
        if self.lookahead is not None and not spare_core(world.local_size):
            self.lookahead = None  # the machine's other ranks take the cores
        self.grad_hooks.append(self._allreduce)
        self._scale = 1.0
        self._zero = None

    def __call__(self, state, plan, s: int):
        rows, whole = plan.rows(s), plan.global_rows(s)
        self._scale = (rows.stop - rows.start) / (whole.stop - whole.start)
        if rows.stop > rows.start:
            return super().__call__(state, plan, s)
        # an empty share (a global batch smaller than the world): no samples, no gradient,
        # but this rank still takes part in the allreduce and the update
        with self.backend.scope():
            xp = self.backend.xp
            self.grads.buffer[...] = 0
            self._allreduce(self.grads)
            self.update(state, plan, s, self.grads)
            if self._zero is None:
                self._zero = xp.zeros(
                    (), dtype=self.grads.buffer.dtype, device=self.grads.buffer.device
                )
        self.losses.append((s, self._zero))
        return self._zero

    def _allreduce(self, grads) -> None:
        if self._scale != 1.0:
            grads.buffer[...] *= self._scale
        self.world.allreduce(grads.buffer, self.backend)

    def end_epoch(self) -> EpochLosses:
        """The epoch's losses over every rank's samples (one small gather)."""
        try:
            local = super().end_epoch()
        except ZeroDivisionError:  # every share of this rank was empty
            local = EpochLosses(float("nan"), 0)
        everyone = self.world.gather(tuple(local))
        bad = [(b, v) for _, _, b, v in everyone if b is not None]
        if bad:
            step, value = min(bad)
            return EpochLosses(float("nan"), 0, step, value)
        samples = sum(n for _, n, _, _ in everyone)
        total = sum(m * n for m, n, _, _ in everyone if n)
        return EpochLosses(total / samples if samples else float("nan"), samples)


class StreamedStep(ShardedStep):
    """The data-parallel step reading its rows from host memory maps, one copy per step."""

    name = "generic (streamed)"

    def __init__(self, world, state, data):
        super().__init__(world, state, data)
        self.source = data.X  # host (N, H*W) uint8, e.g. a Subset of Shards

    def _gather(self, samples, rows: slice, slot: int = 0):
        # the same rows as ``samples``, read on the host
        return self.backend.put(self.source[self.plan.order[rows]])
