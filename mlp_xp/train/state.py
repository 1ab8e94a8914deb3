"""A training run's state: everything a step writes, in one value with one writer per part.

:class:`TrainState` holds

- the parameters (the model's one flat buffer), the optimizer's slots (momentum's velocity,
  Adam's moments; flat buffers laid out like the parameters) and the weights' moving
  average (a flat buffer, with ``ema``): the *step function* writes them, and nothing else
  does while a run goes on (:mod:`mlp_xp.train.step`);
- the optimizer's step count ``t`` and learning rate ``lr``, and the position (``epoch``,
  ``step`` in it, and the loss and time of an interrupted epoch's first part): only
  :meth:`TrainState.advance` and :meth:`TrainState.next_epoch` write them, after the step
  function returns.

:meth:`TrainState.take` copies it all (one device copy per buffer) and
:meth:`TrainState.put_back` writes a copy back into the same buffers, in place (a
captured CUDA graph keeps pointing at them): a diverged epoch is undone whole, and the GPU
fast step's self-check runs two step functions from copies of one state. A checkpoint is
the state on the host (:meth:`TrainState.host_arrays`, :meth:`TrainState.counters`)
beside the trainer's own record (config, history, schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TrainState", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """Device copies of a state's buffers and its host counters (:meth:`TrainState.take`)."""

    buffers: list
    counters: dict


class TrainState:
    """The state of a run (see the module docstring).

    Parameters
    ----------
    model : MLP
        Its flat parameter buffer is the state's; trained in place.
    optimizer : Optimizer
        Bound to ``model.params``: its slots are the state's; its settings (momentum,
        betas) are fixed for the run.
    average : WeightAverage or None
        The weights' moving average, with ``ema``.
    """

    def __init__(self, model, optimizer, average=None) -> None:
        self.model, self.optimizer, self.average = model, optimizer, average
        self.backend = model.backend
        self.epoch = 0  # epochs completed
        self.step = 0  # steps completed inside the current epoch
        self.carried: dict | None = None  # an interrupted epoch's summed loss, samples, seconds

    # -- what the step function reads ---------------------------------------------------------
    @property
    def params(self):
        return self.model.params

    @property
    def t(self) -> int:
        """How many steps the optimizer has taken (Adam's bias corrections count them)."""
        return self.optimizer.t

    @property
    def lr(self) -> float:
        """The learning rate of the latest step."""
        return self.optimizer.lr

    def buffers(self) -> list:
        """The device buffers a step writes: parameters, optimizer slots, moving average."""
        opt = self.optimizer
        buffers = [self.model.params.buffer] + [opt.state[s].buffer for s in opt.slots]
        return buffers + ([self.average.buffer] if self.average is not None else [])

    # -- the counters' one writer ----------------------------------------------------------------
    def advance(self, plan, s: int) -> None:
        """Step ``s`` of ``plan`` has run: count it, at the rate it ran with."""
        self.optimizer.t += 1
        self.optimizer.lr = float(plan.lrs[s])
        self.step = s + 1

    def begin_at(self, epoch: int) -> None:
        """Put a new run's position at the start of ``epoch`` (a fit that goes on from
        earlier epochs: the plans are keyed by epoch)."""
        self.epoch, self.step, self.carried = int(epoch), 0, None

    def next_epoch(self) -> None:
        """The epoch under way is done."""
        self.epoch, self.step, self.carried = self.epoch + 1, 0, None

    def counters(self) -> dict:
        """The host counters, JSON-able: ``t``, ``lr``, ``epoch``, ``step``, ``carried``."""
        carried = dict(self.carried) if self.carried is not None else None
        return {"t": self.t, "lr": self.lr, "epoch": self.epoch, "step": self.step,
                "carried": carried}  # fmt: skip

    def set_counters(self, counters: dict) -> None:
        """Write :meth:`counters` output back (a snapshot or a checkpoint)."""
        self.optimizer.t, self.optimizer.lr = int(counters["t"]), float(counters["lr"])
        self.epoch, self.step = int(counters["epoch"]), int(counters["step"])
        carried = counters.get("carried")
        self.carried = dict(carried) if carried is not None else None

    # -- copies --------------------------------------------------------------------------------
    def take(self) -> Snapshot:
        """A copy of everything a step writes."""
        xp = self.backend.xp
        with self.backend.scope():
            copies = [xp.asarray(b, copy=True) for b in self.buffers()]
        return Snapshot(copies, self.counters())

    def put_back(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` into this state's buffers and counters, in place."""
        with self.backend.scope():
            for live, saved in zip(self.buffers(), snapshot.buffers, strict=True):
                live[...] = saved
        self.set_counters(snapshot.counters)

    # -- on the host (checkpoints) -----------------------------------------------------------
    def host_arrays(self) -> dict[str, Any]:
        """The optimizer's slots (``optim/<slot>/<param>``) and the moving average
        (``average/buffer``) as host arrays; the parameters are the model file's own."""
        get = self.backend.get
        _, slots = self.optimizer.state_dict()
        arrays = {f"optim/{k}": v for k, v in get(slots).items()}
        if self.average is not None:
            arrays["average/buffer"] = get(self.average.buffer)
        return arrays

    def load_host(self, optimizer_state: tuple[dict, dict], position: dict, average=None) -> None:
        """Continue from a checkpoint, in place: the optimizer's ``state_dict()`` pair (its
        slots, ``t`` and ``lr``), the position (``epoch``, ``step``, ``partial_epoch``: the
        trainer's :meth:`~mlp_xp.train.Trainer.state`) and the moving average (host)."""
        self.optimizer.load_state_dict(*optimizer_state)
        if self.average is not None and average is not None:
            self.average.load(average)
        self.epoch, self.step = int(position["epoch"]), int(position["step"])
        carried = position.get("partial_epoch")
        self.carried = dict(carried) if carried is not None else None
