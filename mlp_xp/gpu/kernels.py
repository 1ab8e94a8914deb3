"""The fast step's fused kernels: Python functions that ``cupy.fuse`` compiles.

Each kernel is a function of arrays written with operators and elementwise functions of
the module it is given (``cp``), so the same body runs under CuPy's fusion (one compiled
kernel) and under any NumPy-backed module (the tests' CuPy double runs it there). The
bodies hold as little math of their own as they can: the activations and their
derivatives come from :mod:`mlp_xp.functional`, the dropout mask from its counter-based
hash, the update from the optimizer's own in-place rule; the bilinear blend is
:func:`mlp_xp.train.augment.warp`'s, over the fast step's training set padded with a
one-pixel ring (:func:`_corner_and_fraction`). What is new here -- the softmax
cross-entropy delta in fused form -- is checked against the generic step, in the tests
and, on each device, at run time (:mod:`mlp_xp.gpu.check`).

Kernels write their results into arrays they are given (``out[...] = ...`` or in-place
operators), never into new ones, so a step allocates nothing and can be captured as a
CUDA graph.

Constants that decide an operation's type are NumPy scalars of the model's dtype, never
bare Python floats: CuPy's fusion types a Python scalar by its own type and takes the
first loop that holds it (``cupy/_core/fusion.pyx``, ``_get_fusion_var``;
``cupy/_core/_kernel.pyx``, ``_guess_routine_from_in_types``), so ``where(hit, 1.0, 0.0)``
would run in float16 where NumPy runs it in float64. A scalar next to an array of the
model's dtype (``x * scale``) takes that dtype under both rules and may stay a float.
"""

from __future__ import annotations

from .. import functional as F

__all__ = ["Kernels"]


def _corner_and_fraction(cp, s, far: float, last: float):
    """The top-left neighbour of source coordinates ``s`` and the distance from it.

    ``s`` is limited to the one-pixel ring, ``[-1, far]``; the corner stops at ``last``
    (one short of the far ring), so at the far edge the fraction is 1 and the ring (0)
    is read -- the same samples as :func:`~mlp_xp.train.augment.warp`'s wider border.
    """
    s = cp.minimum(cp.maximum(s, -1.0), far)
    corner = cp.minimum(cp.floor(s), last)
    return corner, s - corner


class Kernels:
    """The fused kernels of one network, optimizer and recipe (constants baked in).

    Parameters
    ----------
    cp : module
        ``cupy`` (or a module that imitates it).
    model, optimizer
        The network (dense layers, softmax output) and its bound optimizer.
    dropout : float
        The hidden layers' dropout rate (0 = off).
    image_shape : (H, W) or None
        For the augmentation kernels.
    """

    def __init__(self, cp, model, optimizer, dropout: float = 0.0, image_shape=None):
        self.cp = cp
        #: 1 and 0 of the model's dtype, for selects that have no array operand to type them
        self.one, self.zero = (cp.dtype(model.dtype).type(v) for v in (1, 0))
        self._layers(cp.fuse, model, dropout)
        self._output_and_update(cp.fuse, optimizer)
        if image_shape is not None:
            self._augmentation(cp.fuse, *image_shape)

    def _layers(self, fuse, model, dropout: float) -> None:
        """Each hidden layer's forward (bias, activation, dropout) and backward kernel."""
        cp, zero = self.cp, self.zero
        total = sum(h.units for h in model.hidden)

        scale = 1.0 / (1.0 - dropout) if dropout else 1.0

        def dropped(x, samples, units, key):
            """Inverted dropout of ``x`` (CuPy's fusion has no ``astype`` function: a select)."""
            keep = F.dropout_keep(F.unit_counters(samples, units, total), key, dropout)
            return cp.where(keep, x * scale, zero)

        def forward_kernel(act):
            if dropout:

                def hidden(a, b, h, samples, units, key):
                    z = a + b
                    a[...] = z
                    h[...] = dropped(act.fn(cp, z), samples, units, key)

            else:

                def hidden(a, b, h):  # type: ignore[misc]  # one of two kernel bodies
                    z = a + b
                    a[...] = z
                    h[...] = act.fn(cp, z)

            return fuse(kernel_name=f"mlp_xp_{act.name}_forward")(hidden)

        def backward_kernel(act):
            if dropout:

                def hidden(a, dh, samples, units, key):
                    dout = dropped(dh, samples, units, key)
                    dh[...] = act.backprop_fused(cp, a, act.fn(cp, a), dout)

            else:

                def hidden(a, dh):  # type: ignore[misc]  # one of two kernel bodies
                    dh[...] = act.backprop_fused(cp, a, act.fn(cp, a), dh)

            return fuse(kernel_name=f"mlp_xp_{act.name}_backward")(hidden)

        acts = [F.activation(name) for name in model.activations]
        self.forward = [forward_kernel(act) for act in acts]
        self.backward = [backward_kernel(act) for act in acts]

    def _output_and_update(self, fuse, optimizer) -> None:
        """The output layer's bias and fused softmax cross-entropy, the step's
        bookkeeping, the optimizer's update and the weights' average."""
        cp, one, zero = self.cp, self.one, self.zero

        @fuse(kernel_name="mlp_xp_add_bias")
        def add_bias(z, b):
            z += b

        @fuse(kernel_name="mlp_xp_exp_shifted")
        def exp_shifted(z, zmax, p):
            p[...] = cp.exp(z - zmax)

        @fuse(kernel_name="mlp_xp_softmax_xent")
        def softmax_xent(p, s, z, zmax, labels, classes, inv_n, delta, contrib):
            """delta = (softmax - t) / N and each row's -ln y_label / N (one-hot t)."""
            hit = labels == classes
            delta[...] = (p / s - cp.where(hit, one, zero)) * inv_n
            contrib[...] = cp.where(hit, cp.log(s) - (z - zmax), zero) * inv_n

        @fuse(kernel_name="mlp_xp_bookkeeping")
        def bookkeeping(loss, counter, total, bad, bad_value):
            """Add the step's loss to the epoch's; note the first non-finite one; count."""
            first = (bad == NO_STEP) & ~cp.isfinite(loss)
            bad[...] = cp.where(first, counter, bad)
            bad_value[...] = cp.where(first, loss, bad_value)
            total += loss
            counter += 1

        @fuse(kernel_name=f"mlp_xp_{optimizer.name}_update")
        def update(p, g, l2, lr, *slots):
            optimizer.rule(p, g + l2 * p, *slots, lr=lr)

        @fuse(kernel_name="mlp_xp_average")
        def average(avg, p, weight):
            """The weights' moving average (:mod:`mlp_xp.train.averaging`), in place."""
            avg += weight * (p - avg)

        self.average = average
        self.add_bias, self.exp_shifted = add_bias, exp_shifted
        self.softmax_xent, self.bookkeeping, self.update = softmax_xent, bookkeeping, update

    def _augmentation(self, fuse, height: int, width: int) -> None:
        cp = self.cp
        hp, wp = height + 2, width + 2

        @fuse(kernel_name="mlp_xp_warp_index")
        def warp_index(rows, cols, samples, offsets, index):
            """Flat indices of the 2x2 neighbours in the padded training set."""
            r0, _ = _corner_and_fraction(cp, rows, float(height), height - 1.0)
            c0, _ = _corner_and_fraction(cp, cols, float(width), width - 1.0)
            index[...] = (
                samples * (hp * wp) + r0.astype(cp.int32) * wp + c0.astype(cp.int32) + offsets
            )

        @fuse(kernel_name="mlp_xp_warp_blend")
        def warp_blend(v0, v1, v2, v3, rows, cols, out):
            """Bilinear blend of the four neighbours, as :func:`~mlp_xp.train.augment.warp`."""
            _, fr = _corner_and_fraction(cp, rows, float(height), height - 1.0)
            _, fc = _corner_and_fraction(cp, cols, float(width), width - 1.0)
            top = v0 + fc * (v1 - v0)
            bottom = v2 + fc * (v3 - v2)
            out[...] = top + fr * (bottom - top)

        self.warp_index, self.warp_blend = warp_index, warp_blend


#: ``bad`` holds this until a non-finite loss is seen (a uint32 that is no step).
NO_STEP = 0xFFFFFFFF
