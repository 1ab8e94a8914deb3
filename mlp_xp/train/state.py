"""Everything a training step writes, taken as one value and put back.

A step writes the parameters, the optimizer's slots (momentum's velocity, Adam's moments),
the weights' moving average -- flat device buffers each -- and the host counters: the
optimizer's step count and rate, and the loop's position in the epoch. :func:`take`
copies them all (one device copy per buffer); :func:`put_back` writes the copies into the
same buffers in place (a captured CUDA graph keeps pointing at them). The loop takes one
at each epoch's start, so a diverged epoch is undone whole, and the GPU fast step's
self-check runs two step functions from copies of one state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Snapshot", "live_buffers", "take", "put_back"]


@dataclass(frozen=True)
class Snapshot:
    """Device copies of :func:`live_buffers` and the host counters beside them."""

    buffers: list
    t: int
    lr: float
    step: int
    carried: dict | None


def live_buffers(trainer) -> list:
    """The parameters, the optimizer's slots and the weights' moving average, if any."""
    opt, average = trainer.optimizer, trainer.average
    buffers = [trainer.model.params.buffer] + [opt.state[s].buffer for s in opt.slots]
    return buffers + ([average.buffer] if average is not None else [])


def take(trainer) -> Snapshot:
    """A copy of everything a step of ``trainer`` writes."""
    xp, opt = trainer.backend.xp, trainer.optimizer
    with trainer.backend.scope():
        copies = [xp.asarray(b, copy=True) for b in live_buffers(trainer)]
    carried: Any = dict(trainer.carried) if trainer.carried is not None else None
    return Snapshot(copies, opt.t, opt.lr, trainer.step, carried)


def put_back(trainer, snapshot: Snapshot) -> None:
    """Write ``snapshot`` into ``trainer``'s buffers and counters, in place."""
    with trainer.backend.scope():
        for live, saved in zip(live_buffers(trainer), snapshot.buffers, strict=True):
            live[...] = saved
    trainer.optimizer.t, trainer.optimizer.lr = snapshot.t, snapshot.lr
    trainer.step = snapshot.step
    trainer.carried = dict(snapshot.carried) if snapshot.carried is not None else None
