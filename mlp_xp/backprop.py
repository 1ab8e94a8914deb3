"""The one layer loop of training: forward through the layers, the loss, then backward.

:func:`backprop` is the chain rule written once; the operations it runs come from an
``ops`` object (as thinc's ``CupyOps`` overrides single operations of ``Ops``):

``inputs()``                 the batch's inputs
``forward(i, h)``            layer ``i``'s (1-based) output from its input ``h``; the last
                             layer's is the logits z
``loss(z)``                  ``(E, dE/dz)``
``delta(i, dh)``             hidden layer ``i``'s dE/d(pre-activation) from dE/d(output)
``weight_grads(i, delta)``   writes layer ``i``'s gradients
``input_grad(i, delta)``     dE/d(input of layer ``i``), the output gradient of layer i - 1

:class:`LayerOps` runs them with the network's own layers on any backend
(:meth:`mlp_xp.model.MLP.loss_and_grads`); the CuPy fast step overrides them with fused
kernels on persistent buffers (:mod:`mlp_xp.gpu.fast`) and holds no loop of its own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["backprop", "LayerOps"]


def backprop(ops, n_layers: int):
    """Forward and backward through ``n_layers`` layers with ``ops``; returns the loss."""
    h = ops.inputs()
    for i in range(1, n_layers + 1):
        h = ops.forward(i, h)
    loss, delta = ops.loss(h)
    for i in range(n_layers, 0, -1):
        if i < n_layers:  # the output layer is linear: dE/dz is the loss's delta
            delta = ops.delta(i, delta)
        ops.weight_grads(i, delta)
        if i > 1:
            delta = ops.input_grad(i, delta)
    return loss


class LayerOps:
    """:func:`backprop`'s operations with ``model``'s layers on a batch ``X``, targets
    ``T`` and optional dropout ``masks`` (one per hidden layer, multiplying its output).

    The gradients go into ``out`` (per-layer views of a flat buffer) where the layers can
    write into arrays, else into :attr:`grads`, a dict of new arrays.
    """

    def __init__(self, model, X, T, masks: list | None = None, out: Any = None):
        self.model, self.layers, self.X, self.T = model, model.layers, X, T
        self.masks, self.out = masks, out
        self.grads: dict = {}

    def _mask(self, i: int):
        masks = self.masks
        return masks[i - 1] if masks is not None and i - 1 < len(masks) else None

    def inputs(self):
        return self.X

    def forward(self, i: int, h):
        h = self.layers[i - 1].forward(h, True)
        mask = self._mask(i)
        return h if mask is None else h * mask

    def loss(self, z):
        return self.model.loss.value_and_delta(self.model.xp, z, self.T)

    def delta(self, i: int, dh):
        mask = self._mask(i)
        return self.layers[i - 1].delta(dh if mask is None else dh * mask)

    def weight_grads(self, i: int, delta) -> None:
        out = self.out
        into = (out[f"W{i}"], out[f"b{i}"]) if out is not None else None
        g = self.layers[i - 1].weight_grads(delta, into)
        self.grads[f"W{i}"], self.grads[f"b{i}"] = g["W"], g["b"]

    def input_grad(self, i: int, delta):
        return self.layers[i - 1].input_grad(delta)
