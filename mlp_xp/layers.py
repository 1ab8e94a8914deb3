"""Layers: parameters and gradients as dicts with matching keys.

Each layer has a public ``forward`` / ``backward`` pair that keeps the cache,
and private ``_fwd`` / ``_bwd`` holding only the math. ``backward`` takes the
gradient of the loss with respect to the layer's output (already carrying the
1/N of the mean) and returns ``(grads, grad_input)``; given ``out=(dW, db)``, arrays
of a backend whose functions take ``out=`` (NumPy, CuPy), it writes the gradients
there instead of into new arrays::

    delta   = dE/dx(l) * f'(a(l))
    dE/dW   = x(l-1)^T delta          dE/db = sum_n delta
    dE/dx(l-1) = delta W^T
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import functional as F
from .constraints import validate
from .errors import ConfigError

__all__ = ["Dense", "Maxout", "LayerSpec", "parse_hidden", "per_layer_activations"]


@dataclass(frozen=True)
class LayerSpec:
    """A layer as written in ``--hidden``: ``300`` or ``maxout:300:2``."""

    units: int
    pieces: int = 0  # 0 = dense layer, k >= 2 = maxout with k linear pieces

    @property
    def is_maxout(self) -> bool:
        return self.pieces > 0

    @property
    def width(self) -> int:
        """Columns of the layer's weight matrix: ``units``, times ``pieces`` for maxout."""
        return self.units * self.pieces if self.is_maxout else self.units

    def __str__(self) -> str:
        return f"maxout:{self.units}:{self.pieces}" if self.is_maxout else str(self.units)


def _count(name: str, text) -> int:
    """An integer from a ``--hidden`` item (``"300"``, ``300``), checked by the table."""
    if isinstance(text, str):
        stripped = text.strip().lstrip("+")
        text = int(stripped) if stripped.isdigit() else text
    return validate(name, text)


def parse_hidden(spec) -> list[LayerSpec]:
    """Parse hidden layers from ``"300,100"``, ``"maxout:300:2,100"`` or a sequence.

    An empty string or sequence means no hidden layer (a linear/logistic model).
    """
    if isinstance(spec, str):
        items = [s.strip() for s in spec.split(",")] if spec.strip() else []
    else:
        items = list(spec)
    layers: list[LayerSpec] = []
    for item in items:
        if isinstance(item, LayerSpec):
            layers.append(item)
        elif isinstance(item, str) and item.lower().startswith("maxout"):
            parts = item.split(":")
            if len(parts) != 3:
                raise ConfigError(f"maxout layer must be written maxout:UNITS:PIECES, got {item!r}")
            layers.append(LayerSpec(_count("units", parts[1]), _count("pieces", parts[2])))
        else:
            layers.append(LayerSpec(_count("units", item)))
    return layers


class _Layer:
    """What dense and maxout layers share: the backward pass in three operations, so the
    one layer loop of training (:func:`mlp_xp.backprop.backprop`) can run them in turn.

    ``delta(dout)`` is dE/d(pre-activation) from dE/d(output); ``weight_grads(delta)`` is
    ``{"W": x^T delta, "b": sum_n delta}`` (into ``out=(dW, db)`` if given);
    ``input_grad(delta)`` is dE/dx. They need a ``forward(x, train=True)`` first; the
    weight gradients release what it kept.
    """

    xp: Any
    params: dict
    _cache: tuple | None

    def _cached(self, release: bool = False) -> tuple:
        if self._cache is None:
            raise RuntimeError("backward() needs a forward(x, train=True) first")
        cache = self._cache
        if release:
            self._cache = None
        return cache

    def delta(self, dout):
        raise NotImplementedError

    def weight_grads(self, delta, out=None) -> dict:
        return _weight_grads(self.xp, self._cached(release=True)[0], delta, out)

    def input_grad(self, delta):
        return self.xp.matmul(delta, self.params["W"].T)

    def backward(self, dout, need_input_grad: bool = True, out=None):
        """``(weight gradients, dE/dx or None)`` from dE/d(output), in one call."""
        delta = self.delta(dout)
        grads = self.weight_grads(delta, out)
        return grads, (self.input_grad(delta) if need_input_grad else None)


class Dense(_Layer):
    """Fully connected layer ``x' = f(x W + b)``.

    Parameters
    ----------
    W : array, shape (n_in, n_out)
    b : array, shape (n_out,)
    act : str
        Name of the activation f (see :data:`mlp_xp.functional.ACTIVATIONS`).
    """

    kind = "dense"

    def __init__(self, xp, W, b, act: str = "relu"):
        self.xp = xp
        self.params = {"W": W, "b": b}
        self.act = F.activation(act)
        self._cache = None

    @property
    def n_out(self) -> int:
        return self.params["b"].shape[0]

    def forward(self, x, train: bool = False):
        a, out = self._fwd(x)
        self._cache = (x, a, out) if train else None
        return out

    def _fwd(self, x):
        a = self.xp.matmul(x, self.params["W"])  # promotes mixed dtypes as the standard does
        a += self.params["b"]
        return a, self.act.fn(self.xp, a)

    def delta(self, dout):
        _, a, h = self._cached()
        return self.act.backprop(self.xp, a, h, dout)


class Maxout(_Layer):
    """Maxout layer (Goodfellow et al., 2013): ``h_j = max_k (x W + b)_{j,k}``.

    Each of ``units`` outputs is the max of ``pieces`` linear pieces; the
    gradient flows only to the winning piece (the first one on ties).

    Parameters
    ----------
    W : array, shape (n_in, units * pieces)
        Column ``j * pieces + k`` is piece ``k`` of unit ``j``.
    b : array, shape (units * pieces,)
    """

    kind = "maxout"

    def __init__(self, xp, W, b, pieces: int):
        self.xp = xp
        self.params = {"W": W, "b": b}
        self.pieces = int(pieces)
        self._cache = None

    @property
    def n_out(self) -> int:
        return self.params["b"].shape[0] // self.pieces

    def forward(self, x, train: bool = False):
        out, winner = self._fwd(x)
        self._cache = (x, winner) if train else None
        return out

    def _fwd(self, x):
        xp = self.xp
        z = xp.matmul(x, self.params["W"]) + self.params["b"]
        z = xp.reshape(z, (x.shape[0], self.n_out, self.pieces))
        winner = xp.argmax(z, axis=2)
        return xp.max(z, axis=2), winner

    def delta(self, dout):
        """dE/dz of every piece: the output's gradient routed to its winning piece."""
        xp, (_, winner) = self.xp, self._cached()
        n = dout.shape[0]
        pieces = xp.arange(self.pieces, dtype=winner.dtype, device=winner.device)
        route = winner[:, :, None] == pieces
        return xp.reshape(xp.where(route, dout[:, :, None], 0.0), (n, self.n_out * self.pieces))


def _weight_grads(xp, x, delta, out=None) -> dict:
    """``dE/dW = x^T delta`` and ``dE/db = sum_n delta``, into ``out=(dW, db)`` if given."""
    if out is None:
        return {"W": xp.matmul(x.T, delta), "b": xp.sum(delta, axis=0)}
    dW, db = out
    xp.matmul(x.T, delta, out=dW)
    xp.sum(delta, axis=0, out=db)
    return {"W": dW, "b": db}


def per_layer_activations(activation, hidden: list[LayerSpec]) -> list[str]:
    """One activation name per hidden layer from one name, a comma list or a sequence
    (``"maxout"`` for a maxout layer, whose entry is not used)."""
    if isinstance(activation, str):
        names = [s.strip() for s in activation.split(",")]
        if len(names) == 1:
            names = names * len(hidden)
    else:
        names = [str(a) for a in activation]
    if len(names) != len(hidden):
        raise ConfigError(f"got {len(names)} activations for {len(hidden)} hidden layers")
    out = []
    for name, spec in zip(names, hidden, strict=True):
        if spec.is_maxout:
            out.append("maxout")
        else:
            out.append(F.activation(name).name)
    return out
