"""The fast step proves itself on each device before it is used.

It may never have run where it was written, so it is not trusted: before a new fast
step trains, a few steps are taken three ways from the same state -- the generic step,
the fast step kernel by kernel, and the fast step as a captured CUDA graph -- and the
parameters, optimizer state and losses they reach are compared. A mismatch beyond float
rounding, or any error on the way (a CUDA error, a kernel that does not compile), is the
verdict "use the generic step", kept in :data:`VERDICTS` for the rest of the process so
that configuration is not tried again on that device.
"""

from __future__ import annotations

from ..errors import first_line
from ..train.state import put_back, take

__all__ = ["compare_steps", "signature", "VERDICTS", "CHECK_STEPS"]

#: Steps taken each way.
CHECK_STEPS = 3
#: Largest accepted difference, relative to the size of the generic step's update.
TOLERANCE = {"float32": 2e-3, "float64": 1e-7}
#: ``(device key, signature) -> ""`` (passed last time) or why the fast step is not used.
VERDICTS: dict = {}


def signature(trainer) -> tuple:
    """What the fast step depends on: the network, optimizer, recipe and input dtype (a
    verdict is remembered for exactly what it was reached on)."""
    model, opt, cfg = trainer.model, trainer.optimizer, trainer.config
    return (
        str(trainer.X.dtype),
        tuple(model.layer_sizes),
        tuple(model.activations),
        model.dtype,
        opt.name,
        bool(getattr(opt, "momentum", 0.0)),
        cfg.augment,
        bool(cfg.dropout),
        bool(cfg.ema),
        trainer.batch_size,
    )


def _difference(xp, got: list, want: list, before: list) -> float:
    """The largest ``|got - want| / |want - before|`` over the arrays (norms)."""
    worst = 0.0
    for g, w, b in zip(got, want, before, strict=True):
        step = float(xp.sqrt(xp.sum((w - b) * (w - b))))
        miss = float(xp.sqrt(xp.sum((g - w) * (g - w))))
        worst = max(worst, miss / max(step, 1e-30))
    return worst


def compare_steps(trainer, generic, fast, plan) -> str:
    """Run both steps from the same state; ``""`` if they agree, else why not.

    The trainer's model and optimizer are left as they were found. On success the fast
    step keeps its captured graph.
    """
    xp = trainer.backend.xp
    k = min(CHECK_STEPS, fast.full_steps)
    first = min(trainer.step, fast.full_steps - k)
    steps = range(first, first + k)
    tolerance = TOLERANCE[trainer.model.dtype]
    with trainer.backend.scope():
        before = take(trainer)
        try:
            generic.begin_epoch(plan, first)
            epoch_start = trainer.epoch * trainer.steps_per_epoch
            for s in steps:
                generic(s)
                if trainer.average is not None:  # as its callback would (the fast step's own)
                    trainer.average.update(trainer.model.params.buffer, epoch_start + s)
            want = take(trainer).buffers
            want_loss = generic.end_epoch().mean
            for how in ("kernel by kernel", "as a CUDA graph"):
                put_back(trainer, before)
                if how == "as a CUDA graph":
                    fast.capture()
                fast.begin_epoch(plan, first)
                for s in steps:
                    fast(s)
                got_loss = fast.end_epoch().mean
                miss = _difference(xp, take(trainer).buffers, want, before.buffers)
                loss_miss = abs(got_loss - want_loss) / max(abs(want_loss), 1e-30)
                if not miss <= tolerance or not loss_miss <= tolerance:
                    return (
                        f"run {how} it did not match the generic step ({k} steps: parameters "
                        f"off by {miss:.2g} of the update, loss by {loss_miss:.2g})"
                    )
        except Exception as exc:  # a CUDA error, a kernel that does not compile, ...
            fast.graph = None
            return f"it failed ({type(exc).__name__}: {first_line(exc)})"
        finally:
            put_back(trainer, before)
    return ""
