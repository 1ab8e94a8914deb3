"""The fast training step on CuPy: fused kernels, persistent buffers, and a CUDA graph
where the platform lets one be captured.

What makes it fast is what it leaves out. Every array a step touches is allocated once,
when the step is built: the batch, the activations, the gradient (one flat buffer), the
step's row of the epoch plan. The epoch plan -- every full step's sample indices and
labels, learning rate and weight of the moving average (device scalars) and augmentation
coefficients, the dropout key,
a step counter and the epoch's loss bookkeeping -- is one device buffer that one
host-to-device copy fills at the start of each epoch; inside the step, a counter on the
device picks the step's row. So a step needs nothing from the host: about 30 kernel
launches (:meth:`FastStep.body`), run kernel by kernel. With ``gpu_step="graph"`` the step
is also captured once as a CUDA graph and replayed with one launch, where the platform
allows it: CuPy 14 refuses cuBLAS calls while a stream captures on CUDA
(``cupy_backends/cuda/libs/cublas.pyx``, ``setStream``), and the step's matrix products
are cuBLAS calls, so there the capture fails and the step stays kernel by kernel.

The batch shape is fixed: the last, smaller batch of an epoch (if any) is run by the
generic step, from the same plan. The step holds no layer loop of its own: it runs
:func:`mlp_xp.backprop.backprop`, the generic step's chain rule, with fused operations
on its buffers (as thinc's ``CupyOps`` overrides single operations of ``Ops``), and no
math the generic step does not hold, except the fused softmax cross-entropy;
:mod:`mlp_xp.gpu.check` compares the two on each device before the fast one is used.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..backprop import backprop
from ..optim import SGD, Adam
from ..train.step import EpochLosses, summarize
from .kernels import NO_STEP, Kernels

__all__ = ["FastStep", "unsupported"]


def unsupported(state, data) -> str:
    """Why the fast step cannot run ``state`` on ``data`` ("" when it can)."""
    model, optimizer = state.model, state.optimizer
    if state.backend.name != "cupy":
        return f"it needs CuPy, the model is on {state.backend}"
    if any(h.is_maxout for h in model.hidden):
        return "maxout layers have no fused kernels"
    if model.task != "classify":
        return f"task {model.task!r} has no fused loss (only 'classify')"
    if type(optimizer) not in (SGD, Adam) or optimizer.params is not model.params:
        return "the optimizer is not an SGD or Adam bound to model.params"
    if data.pixels is not None:
        return "it gathers float inputs; uint8 pixels (pixels=) are scaled by the generic step"
    return ""


class _PlanBuffer:
    """Where each part of the epoch plan sits in one byte buffer (host and device alike)."""

    def __init__(self, steps: int, batch: int, n_coefficients: int, dtype):
        self.dtype = np.dtype(dtype)
        # lr, the average's weight, then (batch, 2, K) coefficients
        self.row = 2 + 2 * batch * n_coefficients
        parts = [
            ("ints", (steps, 2, batch), np.uint32),  # sample indices, labels
            ("scalars", (3,), np.uint32),  # counter, dropout key, first bad step
            ("floats", (steps, self.row), self.dtype),
            ("book", (3,), self.dtype),  # epoch loss total, first bad loss, last loss
        ]
        self.parts, offset = {}, 0
        for name, shape, kind in parts:
            nbytes = int(np.prod(shape)) * np.dtype(kind).itemsize
            self.parts[name] = (offset, shape, kind)
            offset += -(-nbytes // 8) * 8  # keep every part 8-byte aligned
        self.nbytes = offset

    def views(self, raw) -> dict:
        """The parts as typed views of ``raw`` (a uint8 buffer, host or device)."""
        out = {}
        for name, (offset, shape, kind) in self.parts.items():
            size = int(np.prod(shape)) * np.dtype(kind).itemsize
            part = raw[offset : offset + size].view(kind)
            out[name] = part.reshape(shape)
        return out


class FastStep:
    """The CuPy fast step (see the module docstring): ``step(state, plan, s) -> loss`` like
    the generic step, for the one state it was made on (its kernels, and a captured graph,
    hold that state's buffers; :meth:`TrainState.put_back` writes into them in place).

    ``graph`` is None until :meth:`capture`; until then a call runs :meth:`body`
    (kernel by kernel).
    """

    name = "fast"

    def __init__(self, state, data, generic):
        self.generic, self.augmenter = generic, data.augmenter
        self.model, self.optimizer = state.model, state.optimizer
        self.average = state.average  # updated inside the step (and its graph) when set
        self.backend = state.backend
        cp = self.cp = self.backend.cupy
        self.batch = data.batch_size
        self.dropout = bool(data.dropout)
        self.n = data.X.shape[0]
        self.full_steps = self.n // self.batch
        aug = data.augmenter
        shape = None if aug is None else (aug.height, aug.width)
        self.k = Kernels(cp, self.model, self.optimizer, data.dropout, shape)
        self.graph = None
        with self.backend.scope():
            self._allocate(data)

    # -- buffers ------------------------------------------------------------------------
    def _allocate(self, data) -> None:
        cp, model, B = self.cp, self.model, self.batch
        dtype = cp.dtype(model.dtype)
        aug = data.augmenter
        K = aug.n_coefficients if aug is not None else 0
        self.layout = _PlanBuffer(self.full_steps, B, K, dtype)
        self.plan_device = cp.zeros(self.layout.nbytes, dtype=cp.uint8)
        self.plan_host = np.zeros(self.layout.nbytes, dtype=np.uint8)
        parts = self.layout.views(self.plan_device)
        self.ints, self.floats, scalars, book = (
            parts["ints"],
            parts["floats"],
            parts["scalars"],
            parts["book"],
        )
        self.counter, self.key, self.bad = scalars[0], scalars[1], scalars[2]
        self.total, self.bad_value, self.loss_value = book[0], book[1], book[2]
        self.irow = cp.empty((2, B), dtype=cp.uint32)
        self.frow = cp.empty((self.layout.row,), dtype=dtype)
        self.samples = self.irow[0]
        self.samples_col = self.irow[0].reshape(B, 1)
        self.labels_col = self.irow[1].reshape(B, 1)
        self.lr, self.average_weight = self.frow[0], self.frow[1]
        X = data.X
        self.x = cp.empty((B, model.n_inputs), dtype=dtype)
        if aug is not None:
            h, w = aug.height, aug.width
            padded = cp.zeros((self.n, h + 2, w + 2), dtype=dtype)
            padded[:, 1 : h + 1, 1 : w + 1] = X.reshape(self.n, h, w)
            self.source = padded.reshape(-1)
            self.basis = self.backend.put(aug.basis(), dtype)
            self.coefficients = self.frow[2:].reshape(2 * B, K)
            self.coords = cp.empty((B, 2, h * w), dtype=dtype)
            wp = w + 2  # top-left, top-right, bottom-left, bottom-right past the ring
            corners = np.array([wp + 1, wp + 2, 2 * wp + 1, 2 * wp + 2], dtype=np.int32)
            self.offsets = self.backend.put(corners.reshape(1, 4, 1))
            self.index = cp.empty((B, 4, h * w), dtype=cp.int32)
            self.neighbours = cp.empty((B, 4, h * w), dtype=dtype)
        else:
            self.source = X
        sizes = model.layer_sizes
        self.a = [cp.empty((B, u), dtype=dtype) for u in sizes[1:-1]]
        self.h = [cp.empty((B, u), dtype=dtype) for u in sizes[1:-1]]
        self.dh = [cp.empty((B, u), dtype=dtype) for u in sizes[1:-1]]
        start, self.units = 0, []
        for u in sizes[1:-1]:
            self.units.append(self.backend.put(np.arange(start, start + u, dtype=np.uint32)[None]))
            start += u
        n_out = sizes[-1]
        self.z = cp.empty((B, n_out), dtype=dtype)
        self.zmax = cp.empty((B, 1), dtype=dtype)
        self.p = cp.empty((B, n_out), dtype=dtype)
        self.s = cp.empty((B, 1), dtype=dtype)
        self.dz = cp.empty((B, n_out), dtype=dtype)
        self.contrib = cp.empty((B, n_out), dtype=dtype)
        self.classes = self.backend.put(np.arange(n_out, dtype=np.uint32)[None])
        params = model.params
        self.grads = params.layout.views(cp, cp.zeros_like(params.buffer))
        l2 = np.zeros(params.layout.size, dtype=dtype)
        l2[: params.layout.n_weights] = model.l2
        self.l2 = self.backend.put(l2)
        self.slots = [self.optimizer.state[s].buffer for s in self.optimizer.slots]
        self.labels = self.backend.get(cp.argmax(data.T, axis=1)).astype(np.uint32)

    # -- the step -----------------------------------------------------------------------
    def body(self) -> None:
        """One step, kernel by kernel, on the persistent buffers (what the graph holds).

        CuPy's CUB routines are off while it runs: ``cupy/cuda/cub.pyx``
        (``device_reduce``, ``device_segmented_reduce``) allocates a result and a workspace
        for each reduction and copies into ``out`` -- blocks a captured graph would keep
        using after the pool took them back. Without them, the reductions are CuPy's own
        kernels writing straight into their buffers, and the step allocates nothing.
        """
        core = self.cp._core
        accelerators = core.get_routine_accelerators()
        core.set_routine_accelerators([])
        try:
            self._kernels()
        finally:
            core.set_routine_accelerators(accelerators)

    def _kernels(self) -> None:
        """Forward and backward by :func:`~mlp_xp.backprop.backprop` (the generic step's
        one layer loop) with this step's fused operations below, then the update."""
        cp, k = self.cp, self.k
        cp.take(self.ints, self.counter, axis=0, out=self.irow)
        cp.take(self.floats, self.counter, axis=0, out=self.frow)
        backprop(self, len(self.k.forward) + 1)
        params = self.model.params
        k.update(params.buffer, self.grads.buffer, self.l2, self.lr, *self.slots)
        if self.average is not None:
            k.average(self.average.buffer, params.buffer, self.average_weight)

    # -- backprop's operations, fused, on the persistent buffers -------------------------
    def _mask(self, i: int) -> tuple:
        """What the kernels of hidden layer ``i`` (1-based) need to make its dropout mask."""
        return (self.samples_col, self.units[i - 1], self.key) if self.dropout else ()

    def _input(self, i: int):
        return self.x if i == 1 else self.h[i - 2]

    def inputs(self):
        """The step's batch, gathered (and distorted) into :attr:`x`."""
        cp, k, B = self.cp, self.k, self.batch
        if self.augmenter is None:
            cp.take(self.source, self.samples, axis=0, out=self.x)
            return self.x
        cp.matmul(self.coefficients, self.basis, out=self.coords.reshape(2 * B, -1))
        rows, cols = self.coords[:, 0:1, :], self.coords[:, 1:2, :]
        k.warp_index(rows, cols, self.samples.reshape(B, 1, 1), self.offsets, self.index)
        cp.take(self.source, self.index, out=self.neighbours)
        v, c = self.neighbours, self.coords
        k.warp_blend(v[:, 0], v[:, 1], v[:, 2], v[:, 3], c[:, 0], c[:, 1], self.x)
        return self.x

    def forward(self, i: int, h):
        params = self.model.params
        if i > len(self.k.forward):  # the output layer
            self.cp.matmul(h, params[f"W{i}"], out=self.z)
            self.k.add_bias(self.z, params[f"b{i}"])
            return self.z
        self.cp.matmul(h, params[f"W{i}"], out=self.a[i - 1])
        self.k.forward[i - 1](self.a[i - 1], params[f"b{i}"], self.h[i - 1], *self._mask(i))
        return self.h[i - 1]

    def loss(self, z):
        """The fused softmax cross-entropy: its delta, the loss and the epoch's book."""
        cp, k = self.cp, self.k
        cp.max(z, axis=1, keepdims=True, out=self.zmax)
        k.exp_shifted(z, self.zmax, self.p)
        cp.sum(self.p, axis=1, keepdims=True, out=self.s)
        k.softmax_xent(self.p, self.s, z, self.zmax, self.labels_col, self.classes,
                       1.0 / self.batch, self.dz, self.contrib)  # fmt: skip
        cp.sum(self.contrib, out=self.loss_value)
        k.bookkeeping(self.loss_value, self.counter, self.total, self.bad, self.bad_value)
        return self.loss_value, self.dz

    def delta(self, i: int, dh):
        self.k.backward[i - 1](self.a[i - 1], dh, *self._mask(i))  # in place
        return dh

    def weight_grads(self, i: int, delta) -> None:
        self.cp.matmul(self._input(i).T, delta, out=self.grads[f"W{i}"])
        self.cp.sum(delta, axis=0, out=self.grads[f"b{i}"])

    def input_grad(self, i: int, delta):
        self.cp.matmul(delta, self.model.params[f"W{i}"].T, out=self.dh[i - 2])
        return self.dh[i - 2]

    def capture(self) -> None:
        """Capture :meth:`body` as a CUDA graph (recorded, not run) for one-launch steps."""
        with self.backend.scope():  # a stream belongs to the device current when made
            stream = self.cp.cuda.Stream(non_blocking=True)
        with self.backend.scope(), stream:
            stream.begin_capture()
            try:
                self.body()
            except Exception:
                with contextlib.suppress(Exception):  # an invalidated capture: keep the cause
                    stream.end_capture()
                raise
            self.graph = stream.end_capture()

    # -- what the loop calls ------------------------------------------------------------
    def begin_epoch(self, state, plan, start: int = 0) -> None:
        """Fill the plan buffer for ``plan`` from step ``start`` on: one copy to the device."""
        B, full = self.batch, self.full_steps
        host = self.layout.views(self.plan_host)
        order = plan.order[: full * B].reshape(full, B)
        host["ints"][:, 0, :] = order
        host["ints"][:, 1, :] = self.labels[order]
        host["scalars"][:] = (min(start, full), plan.dropout_key, NO_STEP)
        t0 = state.t
        lrs = [
            self.optimizer.step_size(t0 + s - start + 1, float(plan.lrs[s])) if s >= start else 0
            for s in range(full)
        ]
        host["floats"][:, 0] = lrs
        if self.average is not None:
            host["floats"][:, 1] = [self.average.weight(plan.global_step(s)) for s in range(full)]
        if plan.coefficients is not None:
            host["floats"][:, 2:] = plan.coefficients[: full * B].reshape(full, -1)
        host["book"][:] = 0.0
        with self.backend.scope():
            self.plan_device.set(self.plan_host)
        self.start, self.plan = start, plan
        if plan.steps > full:  # the last, smaller batch goes to the generic step
            self.generic.begin_epoch(state, plan, start)

    def __call__(self, state, plan, s: int):
        """Step ``s`` of ``plan`` (begun with :meth:`begin_epoch`): its loss, on the device."""
        if state.params.buffer is not self.model.params.buffer:
            raise ValueError("a fast step runs the state it was made on (its buffers)")
        if s >= self.full_steps:
            return self.generic(state, plan, s)
        with self.backend.scope():
            if self.graph is not None:
                self.graph.launch()
            else:
                self.body()
        return self.loss_value

    def end_epoch(self) -> EpochLosses:
        """The epoch's losses: the fast steps' bookkeeping and any generic last step."""
        parts = self.layout.views(self.plan_device)
        book, scalars = self.backend.get((parts["book"], parts["scalars"]))
        ran, bad = int(scalars[0]) - min(self.start, self.full_steps), int(scalars[2])
        if bad != NO_STEP:
            return EpochLosses(float("nan"), 0, bad, float(book[1]))
        # the fast steps' batches are all full: each loss weighs batch_size samples
        count = ran * self.plan.batch_size
        total = float(book[0]) * self.plan.batch_size
        if self.plan.steps > self.full_steps and self.generic.losses:
            rest = summarize(self.backend, self.generic.losses, self.plan)
            if rest.bad_step is not None:
                return rest
            total += rest.mean * rest.samples
            count += rest.samples
        return EpochLosses(total / max(count, 1), count)
