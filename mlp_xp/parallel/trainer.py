"""Synchronous data parallelism: N processes on shares of each global batch equal one process.

The contract is PyTorch DDP's and Horovod's: ``config.batch_size`` is the *global* batch.
Every rank makes the same epoch plan from the seed (the global shuffle, the augmentation
coefficients and the dropout key, all keyed by sample, :mod:`mlp_xp.train.plan`), and
rank ``r`` of ``N`` takes the contiguous stretch ``[r b / N, (r + 1) b / N)`` of every
global batch of ``b`` rows (:class:`ShardPlan`). A step:

1. computes the local mean gradient over the rank's ``n_r`` samples into the step's flat
   gradient buffer (parameters and gradients are views of one buffer each:
   :mod:`mlp_xp.flat`);
2. scales it by ``n_r / b`` -- so the sum over ranks is the mean over the global batch,
   the L2 term ``lambda W`` included once;
3. sums it over the ranks in **one** allreduce of the flat buffer
   (:meth:`~mlp_xp.parallel.world.World.allreduce`);
4. applies the optimizer's update, the same on every rank, so parameters and optimizer
   state stay identical without being sent again.

Rank 0's initial parameters are broadcast first. The epoch's losses and the held-out
metrics are reduced across ranks (each rank evaluates its share of the held-out set), so
every rank takes the same early-stopping and divergence decisions. A stop request (Ctrl-C
or SIGTERM on any rank) is agreed by a non-blocking vote and ends every rank after the
same step.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..calibration import Reliability
from ..data.door import check_data
from ..errors import ConfigError
from ..train.loop import Trainer
from ..train.plan import EpochPlan
from .steps import ShardedStep, ShardPlan, StreamedStep, share
from .world import Watchdog, World

__all__ = ["DistributedTrainer", "ShardPlan", "share", "combine_metrics"]


class DistributedTrainer(Trainer):
    """A :class:`~mlp_xp.train.loop.Trainer` that is one rank of ``world``.

    Takes the same arguments, plus ``world`` (and ``watchdog``: seconds without a finished
    step after which the job is aborted, ``None`` for no watchdog). Every rank passes the
    whole training set (or a memory map of it: a rank reads only the rows of its shares)
    and the whole held-out set, of which it keeps its share.
    """

    def __init__(self, world: World, model, X, y, X_val=None, y_val=None, config=None,
                 *, watchdog: float | None = None, stream: bool = False, **kwargs):  # fmt: skip
        self.world, self.stream = world, stream
        if model.backend.name == "torch" and model.backend.kind == "gpu" and world.size > 1:
            raise ConfigError(
                f"--distributed runs PyTorch ranks on the CPU only (torch:cpu, over MPI), not "
                f"{model.backend.spec}: use --device gpu for GPU ranks (CuPy with NCCL)"
            )
        if stream and kwargs.get("pixels") is None:
            raise ConfigError("stream=True reads uint8 pixels: pass pixels=<Normalization>")
        # the door sees the whole sets on every rank, so every rank refuses together (a
        # rank's share of the held-out split may be empty)
        X, y, X_val, y_val = check_data(model, X, y, X_val, y_val)
        if X_val is not None and y_val is not None:
            rows = share(0, len(y_val), world.rank, world.size)
            X_val, y_val = X_val[rows], y_val[rows]
        super().__init__(model, X, y, X_val, y_val, config, **kwargs)
        if self.config.gpu_step in ("fast", "graph"):
            raise ConfigError(
                f"gpu_step={self.config.gpu_step!r} is not data-parallel yet; use "
                "gpu_step='auto' or 'generic' with --distributed"
            )
        self.config.gpu_step = "generic"
        world.agree(self.fingerprint(), "configurations or data")
        world.broadcast(model.params.buffer, self.backend)  # rank 0's initial parameters
        self.watchdog = Watchdog(world, watchdog) if watchdog else None
        #: what the run's log and model file record of its ranks
        self.ranks = {
            "ranks": world.size,
            "devices": world.gather(self.backend.spec),
            "gradients summed with": "NCCL" if self.backend.kind == "gpu" else "MPI",
        }

    def _admit(self, model, X, y, X_val, y_val) -> tuple:
        return X, y, X_val, y_val  # checked whole in __init__, before its held-out share

    def fingerprint(self) -> dict:
        """What every rank must share: the configuration, the kind of device (the ranks'
        collectives go through MPI or NCCL, not both), the network and the data (each
        rank's device is its own: GPU ranks each drive a different GPU)."""
        labels = self.backend.get(self.T)
        return {
            "device kind": self.backend.kind,
            **{f"config.{k}": v for k, v in self.config.as_dict().items() if k != "gpu_step"},
            "network": self.model.config(),
            "training samples": int(self.X.shape[0]),
            "training targets": float(np.sum(labels * np.arange(1, labels.shape[-1] + 1))),
        }

    @property
    def n_val(self) -> int:
        return int(self.y_val.shape[0]) if self.has_val else 0

    def plan(self, epoch: int) -> ShardPlan:
        plan = super().plan(epoch)
        fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(EpochPlan)}
        return ShardPlan(**fields, rank=self.world.rank, ranks=self.world.size)

    def _inputs(self, X):
        if self.stream:  # host memory maps, read a batch at a time (mlp_xp.parallel.stream)
            return X
        return super()._inputs(X)

    def _choose_step(self, plan):
        step = StreamedStep if self.stream else ShardedStep
        return step(self.world, self.train_state, self.data)

    def should_stop(self) -> bool:
        if self.watchdog is not None:
            self.watchdog.beat()
        return self.world.vote(self._stop.is_set())

    def run(self):
        try:
            return super().run()
        finally:
            self.world.finish_vote()  # every rank has one pending vote; settle it together

    def evaluate_held_out(self) -> dict:
        """Every rank evaluates its share of the held-out set; the metrics are combined."""
        local = {"samples": 0}
        if self.n_val:
            local = self.model.evaluate(self.X_val, self.y_val, check=False, bins=True)
        return combine_metrics(self.world.gather(local))


def combine_metrics(everyone: list[dict]) -> dict:
    """The metrics of the whole held-out set from each rank's share of it: means weighted
    by samples, and a classifier's ECE from the bins summed over the ranks (the ECE of
    the whole set, not the mean of the shares' ECEs)."""
    n = sum(m["samples"] for m in everyone)
    keys = {k for m in everyone for k in m if k not in ("samples", "bins")}
    out = {k: sum(m[k] * m["samples"] for m in everyone if m["samples"]) / n for k in keys}
    bins = [np.asarray(m["bins"]) for m in everyone if m.get("bins") is not None]
    if bins:
        out["ece"] = Reliability.from_sums(np.sum(bins, axis=0)).ece
    out["samples"] = n
    return out
