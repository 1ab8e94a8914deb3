"""The fast step proves itself on each device before it is used.

It may never have run where it was written, so it is not trusted: before a new fast
step trains, a few steps are taken from copies of one state -- by the generic step, by the
fast step kernel by kernel and, with ``gpu_step="graph"``, by the fast step captured as a
CUDA graph -- and the parameters, optimizer state and losses they reach are compared. A
kernel-by-kernel mismatch beyond float rounding, or any error on the way (a CUDA error, a
kernel that does not compile), is the verdict "use the generic step", kept in
:data:`VERDICTS` for the rest of the process so that configuration is not tried again on
that device. A graph that cannot be captured or does not match loses only the graph.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import first_line

__all__ = ["compare_steps", "signature", "Verdict", "VERDICTS", "CHECK_STEPS"]

#: Steps taken each way.
CHECK_STEPS = 3
#: Largest accepted difference, relative to the size of the generic step's update.
TOLERANCE = {"float32": 2e-3, "float64": 1e-7}
#: ``(device key, signature) -> ""`` (passed last time) or why the fast step is not used.
VERDICTS: dict = {}


def signature(state, data) -> tuple:
    """Everything the fast step reads that a verdict may depend on: the inputs' kind, the
    network, the optimizer and its settings (baked into its kernels), the recipe's fixed
    parts (augmentation, the dropout rate, the moving average's decay) and the batch size
    -- a verdict is remembered for exactly what it was reached on."""
    model, opt, average = state.model, state.optimizer, state.average
    aug = data.augmenter
    return (
        str(data.X.dtype),
        None if data.pixels is None else (data.pixels.scale, data.pixels.offset),
        tuple(model.layer_sizes),
        tuple(model.activations),
        model.dtype,
        model.task,
        float(model.l2),
        tuple(sorted(opt.hyperparameters().items())),
        None if aug is None else (aug.kind, aug.height, aug.width, aug.n_coefficients),
        float(data.dropout),
        None if average is None else average.decay,
        data.batch_size,
    )


def _difference(xp, got: list, want: list, before: list) -> float:
    """The largest ``|got - want| / |want - before|`` over the arrays (norms)."""
    worst = 0.0
    for g, w, b in zip(got, want, before, strict=True):
        step = float(xp.sqrt(xp.sum((w - b) * (w - b))))
        miss = float(xp.sqrt(xp.sum((g - w) * (g - w))))
        worst = max(worst, miss / max(step, 1e-30))
    return worst


class Verdict(NamedTuple):
    """What the check found: ``failed`` (why the fast step is not used, ``""`` if it is)
    and ``no_graph`` (why it was not captured as a CUDA graph, when that was asked)."""

    failed: str
    no_graph: str = ""


def _run(state, step, plan, steps) -> tuple[list, float]:
    """Take ``steps`` with ``step`` from ``state`` as the loop does: the buffers they
    reach (copies) and their mean loss."""
    step.begin_epoch(state, plan, steps[0])
    for s in steps:
        step(state, plan, s)
        state.advance(plan, s)
    mean = step.end_epoch().mean
    return state.take().buffers, mean


def compare_steps(state, generic, fast, plan, graph: bool = False) -> Verdict:
    """Run both steps from copies of one state (:class:`~mlp_xp.train.state.TrainState`)
    and compare.

    The fast step is run kernel by kernel; with ``graph`` it is then captured as a CUDA
    graph and run again. A capture that fails (CuPy 14 refuses cuBLAS while a stream
    captures) or does not match loses the graph only: the kernel-by-kernel step is kept.
    ``state`` is left as it was found.
    """
    xp = state.backend.xp
    k = min(CHECK_STEPS, fast.full_steps)
    first = min(state.step, fast.full_steps - k)
    steps = range(first, first + k)
    tolerance = TOLERANCE[state.model.dtype]

    def mismatch(how: str, before, want, want_loss) -> str:
        state.put_back(before)
        got, got_loss = _run(state, fast, plan, steps)
        miss = _difference(xp, got, want, before.buffers)
        loss_miss = abs(got_loss - want_loss) / max(abs(want_loss), 1e-30)
        if miss <= tolerance and loss_miss <= tolerance:
            return ""
        return (f"run {how} it did not match the generic step ({k} steps: parameters off "
                f"by {miss:.2g} of the update, loss by {loss_miss:.2g})")  # fmt: skip

    with state.backend.scope():
        before = state.take()
        try:
            want, want_loss = _run(state, generic, plan, steps)
            failed = mismatch("kernel by kernel", before, want, want_loss)
            if failed or not graph:
                return Verdict(failed)
            state.put_back(before)
            try:
                fast.capture()
                no_graph = mismatch("as a CUDA graph", before, want, want_loss)
            except Exception as exc:  # cuBLAS refusing the capture, a CUDA error, ...
                no_graph = f"{type(exc).__name__}: {first_line(exc)}"
            if no_graph:
                fast.graph = None
            return Verdict("", no_graph)
        except Exception as exc:  # a CUDA error, a kernel that does not compile, ...
            fast.graph = None
            return Verdict(f"it failed ({type(exc).__name__}: {first_line(exc)})")
        finally:
            state.put_back(before)
