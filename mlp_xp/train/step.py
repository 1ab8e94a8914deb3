"""One training step, written once in ``xp``: gather, augment, forward, backward, update.

A step is a function of the run's state (:class:`~mlp_xp.train.state.TrainState`) and
the epoch's plan: ``step(state, plan, s) -> loss`` writes the parameters, the optimizer's
slots and the weights' moving average, and returns the loss of step ``s`` (a device
scalar). The loop then counts the step (:meth:`TrainState.advance`), so the counters have
one writer. What a step reads besides the state -- the training data and the recipe's
fixed parts -- is a :class:`StepData`, given when the step is made (with the state, to
size its buffers); nothing refers back to a trainer.

:class:`GenericStep` runs on every backend; the CuPy fast step of :mod:`mlp_xp.gpu` is a
second implementation of the same function. Around the calls, each has

``begin_epoch(state, plan, start)``  take the plan (one copy of its arrays to the
                                     device) before step ``start``
``end_epoch()``                      :class:`EpochLosses` of the steps run (one copy back)

Its parts compose: :meth:`GenericStep.batch` makes a batch's inputs, targets and
dropout masks; ``grad_hooks`` are called with the flat gradient before the update
(an allreduce across processes goes there); the optimizer applies the update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .dropout import dropout_masks
from .lookahead import Lookahead, spare_core

__all__ = ["GenericStep", "StepData", "EpochLosses", "FASTER_STEPS"]

#: Faster steps a backend's package offers, by backend name: ``chooser(state, data, mode,
#: generic, plan) -> step`` (``mode`` is ``TrainConfig.gpu_step``), the generic step when
#: the faster one cannot be used. :mod:`mlp_xp.gpu`
#: adds CuPy's fast step when it is imported (``import mlp_xp`` does; it imports no CuPy),
#: so the loop needs no import of an outer package.
FASTER_STEPS: dict[str, Callable[..., Any]] = {}


class EpochLosses(NamedTuple):
    """An epoch's losses as host numbers: their mean and the first non-finite one.

    ``mean`` is over the samples the steps saw: each step's (batch-mean) loss
    weighs what its batch holds, so a smaller last batch counts for less.
    """

    mean: float
    samples: int = 0  # how many samples the steps saw
    bad_step: int | None = None  # 0-based step of the first NaN/Inf loss
    bad_value: float = 0.0


@dataclass(frozen=True)
class StepData:
    """What a step reads besides the state: the data on the device and the recipe's fixed
    parts.

    ``X`` (N, n_inputs) inputs, or uint8 pixels scaled per batch by ``pixels`` (a
    :class:`~mlp_xp.data.Normalization`); ``T`` (N, n_outputs) encoded targets;
    ``augmenter`` (or None); ``dropout``, the hidden layers' inverted-dropout rate (0 = off);
    ``batch_size``.
    """

    X: Any
    T: Any
    augmenter: Any = None
    dropout: float = 0.0
    pixels: Any = None
    batch_size: int = 128


class GenericStep:
    """Mini-batch gradient descent on any backend (see the module docstring).

    Parameters
    ----------
    state : TrainState
        The run's state; its layout sizes the step's gradient buffer.
    data : StepData
    """

    name = "generic"

    def __init__(self, state, data: StepData):
        self.data = data
        self.backend = state.backend
        self.grad_hooks: list = []
        self.plan: Any = None  # the EpochPlan of the epoch under way
        self._gathered: dict = {}  # (batch size, slot) -> the buffer a batch is gathered into
        # on the CPU, distorted inputs are made a step ahead on a core BLAS leaves free
        ahead = self.backend.kind == "cpu" and self.data.augmenter is not None and spare_core()
        self.lookahead = Lookahead() if ahead else None
        with self.backend.scope():  # the step's gradient buffer, reused at every step
            params, xp = state.params, self.backend.xp
            self.grads = params.layout.views(xp, xp.zeros_like(params.buffer))

    def begin_epoch(self, state, plan, start: int = 0) -> None:
        self.dtype = state.model.dtype
        if self.lookahead is not None:
            self.lookahead.settle()
        self.plan = plan
        self.order = self.backend.put(plan.order, np.int64)
        self.coefficients: Any = None
        if self.data.augmenter is not None:
            self.coefficients = self.backend.put(plan.coefficients, self.dtype)
        self.losses: list = []

    def inputs(self, s: int):
        """Step ``s``'s model inputs: its rows gathered, scaled and distorted.

        Into one of two buffer sets, by the step's parity, so that inputs made ahead
        (:mod:`mlp_xp.train.lookahead`) never overwrite the ones in use.
        """
        rows, slot = self.plan.rows(s), (s % 2 if self.lookahead is not None else 0)
        xb = self._gather(self.order[rows], rows, slot)
        if self.data.pixels is not None:
            xb = self.scale(xb)
        if self.data.augmenter is not None:
            xb = self.data.augmenter(xb, self.coefficients[rows, ...], self.backend, slot=slot)
        return xb

    def batch(self, model, s: int):
        """Step ``s``'s inputs (augmented), targets and dropout masks, on the device."""
        xp, rows = self.backend.xp, self.plan.rows(s)
        samples = self.order[rows]
        if self.lookahead is None:
            xb = self.inputs(s)
        else:
            xb = self.lookahead.take(s, lambda: self.inputs(s))
            if s + 1 < self.plan.steps and self._has_rows(s + 1):
                self.lookahead.ahead(s + 1, lambda: self.inputs(s + 1))
        masks = None
        if self.data.dropout:
            masks = dropout_masks(model, samples, self.plan.dropout_key, self.data.dropout)
        return xb, xp.take(self.data.T, samples, axis=0), masks

    def _has_rows(self, s: int) -> bool:
        rows = self.plan.rows(s)  # a rank's share of a small global batch may be empty
        return rows.stop > rows.start

    def scale(self, pixels):
        """A batch of uint8 pixels as the model's inputs (``pixel * scale + offset``)."""
        xp = self.backend.xp
        x = xp.astype(pixels, self.grads.buffer.dtype)
        x *= self.data.pixels.scale
        if self.data.pixels.offset:
            x += self.data.pixels.offset
        return x

    def _gather(self, samples, rows: slice, slot: int = 0):
        """The batch's inputs (``samples``, the plan's ``rows``); where ``take`` has
        ``out=``, into a buffer of ``slot`` reused every other step (on the CPU a new
        array of this size each step costs page faults, not copying)."""
        xp, X = self.backend.xp, self.data.X
        if not self.backend.writes_out:
            return xp.take(X, samples, axis=0)
        key = (samples.shape[0], slot)
        if key not in self._gathered:
            self._gathered[key] = xp.empty((key[0], X.shape[1]), dtype=X.dtype, device=X.device)
        return xp.take(X, samples, axis=0, out=self._gathered[key])

    def __call__(self, state, plan, s: int):
        """Step ``s`` of ``plan`` (begun with :meth:`begin_epoch`) on ``state``: its loss."""
        model = state.model
        with self.backend.scope():
            xb, tb, masks = self.batch(model, s)
            loss, grads = model.loss_and_grads(xb, tb, masks, with_penalty=False, out=self.grads)
            for hook in self.grad_hooks:
                hook(grads)
            self.update(state, plan, s, grads)
        self.losses.append((s, loss))
        return loss

    def update(self, state, plan, s: int, grads) -> None:
        """The optimizer's step ``s`` with ``grads``, then the weights' moving average."""
        state.optimizer.apply(grads, state.t + 1, float(plan.lrs[s]))
        if state.average is not None:
            state.average.update(state.params.buffer, plan.global_step(s))

    def end_epoch(self) -> EpochLosses:
        if self.lookahead is not None:
            self.lookahead.settle()
        return summarize(self.backend, self.losses, self.plan)


def summarize(backend, losses: list, plan) -> EpochLosses:
    """:class:`EpochLosses` of ``(step, device loss)`` pairs, with one copy to the host."""
    if not losses:
        return EpochLosses(float("nan"))
    steps = [s for s, _ in losses]
    with backend.scope():
        values = backend.get(backend.xp.stack([v for _, v in losses])).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        return EpochLosses(float("nan"), 0, steps[bad[0]], float(values[bad[0]]))
    sizes = np.array([plan.rows(s).stop - plan.rows(s).start for s in steps])
    return EpochLosses(float(np.average(values, weights=sizes)), int(sizes.sum()))
