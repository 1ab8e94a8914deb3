"""What a distributed ``mlp-xp train`` keeps of its ranks: their devices in the log and
the model file, and rank 0's checkpoints for a job that ends badly."""

from __future__ import annotations

from ..train import Callback, save_checkpoint
from . import resume
from .spec import RunSpec

__all__ = ["record_ranks", "EpochCheckpoint"]


def record_ranks(spec: RunSpec, trainer, meta: dict, log) -> None:
    """A distributed run's ranks, in the log and the model file; rank 0's watchdog writes
    a checkpoint of the last finished step before it ends a stuck job."""
    ranks = meta["training"]["distributed"] = trainer.ranks
    devices = ", ".join(f"rank {r}: {d}" for r, d in enumerate(ranks["devices"]))
    print(f"{ranks['ranks']} ranks ({devices}); gradients summed with "
          f"{ranks['gradients summed with']}", file=log, flush=True)  # fmt: skip
    if not trainer.world.is_root:
        return

    def checkpoint() -> str:
        where = f"epoch {trainer.epoch + 1}, step {trainer.step}"
        outputs = resume.outputs_record(spec.checkpoint_path, spec.out, spec.run_dir)
        save_checkpoint(spec.checkpoint_path, trainer, **meta, outputs=outputs)
        return f"the last finished step ({where}) is in {spec.checkpoint_path}"

    trainer.callbacks.append(EpochCheckpoint(checkpoint))  # a killed rank ends the job at once
    if trainer.watchdog is not None:
        trainer.watchdog.last_words = checkpoint


class EpochCheckpoint(Callback):
    """Rank 0 of a distributed run checkpoints at every epoch's start after the first: when
    a rank is killed, the launcher ends every rank at once, and this is what is left."""

    def __init__(self, save):
        self.save = save

    def on_epoch_start(self, trainer, epoch: int, n_steps: int) -> None:
        if epoch > 1 and trainer.step == 0:
            self.save()
