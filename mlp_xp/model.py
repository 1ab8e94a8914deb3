"""The multilayer perceptron: a stack of layers, a loss, and L2 on the weights.

Forward (course notes)::

    a(l) = x(l-1) W(l) + b(l),   x(l) = f(a(l)),   z = a(L),   y = g(z)

Loss: ``E = data loss + (lambda/2) sum_l ||W(l)||^2`` (biases are not
penalised). Backward: ``delta(L) = (y - t)/N``, ``delta(l) = delta(l+1)
W(l+1)^T * f'(a(l))``, ``dE/dW(l) = x(l-1)^T delta(l) + lambda W(l)``,
``dE/db(l) = sum_n delta(l)``.

The parameters are views of one flat device buffer (:mod:`mlp_xp.flat`), and so are
the gradients :meth:`MLP.loss_and_grads` returns. Every method that computes runs with
the model's device current (:meth:`~mlp_xp.backends.Backend.scope`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from . import budget, metrics
from . import functional as F
from .arrays import Array, ArrayLike, as_rows
from .backends import Backend, get_backend
from .backprop import LayerOps, backprop
from .constraints import validate
from .errors import ConfigError
from .flat import FlatParams, Layout
from .init import xavier_uniform
from .layers import Dense, LayerSpec, Maxout, parse_hidden, per_layer_activations

__all__ = ["MLP"]

#: ``weights(i, n_in, spec) -> (W, b)``: the host arrays of layer ``i`` (1-based).
WeightSource = Callable[[int, int, LayerSpec], tuple]
R = TypeVar("R")


def on_device(method: Callable[..., R]) -> Callable[..., R]:
    """Run a method with the model's device current (new arrays land there)."""

    @functools.wraps(method)
    def run(self: MLP, *args: Any, **kwargs: Any) -> R:
        with self.backend.scope():
            return method(self, *args, **kwargs)

    return run


class MLP:
    """A multilayer perceptron whose math runs on any array backend.

    Parameters
    ----------
    n_inputs : int
        Features per sample (784 for 28x28 digits).
    hidden : str or sequence
        Hidden layers: ``(300, 100)``, ``"300,100"`` or ``"maxout:300:2,100"``.
    n_outputs : int
        10 digit classes; 1 for ``task="binary"``; any number for ``"regress"``.
    activation : str or sequence of str
        One name for every dense hidden layer, or one per hidden layer (the
        entry of a maxout layer is not used: maxout is its own nonlinearity).
    task : {"classify", "binary", "regress"}
        Output function and loss: softmax + cross-entropy, sigmoid + binary
        cross-entropy, or linear + squared error.
    l2 : float
        The lambda of the weight penalty ``(lambda/2) ||W||^2``.
    backend : str or Backend
        ``"auto"``, ``"cpu"``, ``"gpu"`` or a :class:`~mlp_xp.backends.Backend`.
    dtype : {"float32", "float64"}
    seed : int or numpy.random.Generator
        Seed (or host generator) that draws the Xavier initial weights.

    Examples
    --------
    >>> model = MLP(784, (300, 100), 10, backend="cpu", seed=0)
    >>> model.layer_sizes
    [784, 300, 100, 10]
    """

    #: Softmax temperature of a classifier's probabilities (``predict_proba``,
    #: ``evaluate``); 1 until fitted (:func:`mlp_xp.calibration.fit_temperature`).
    #: Training never uses it; predicted classes do not depend on it.
    temperature: float = 1.0

    def __init__(
        self,
        n_inputs: int = 784,
        hidden: Any = (300, 100),
        n_outputs: int = 10,
        *,
        activation: str | Sequence[str] = "relu",
        task: str = "classify",
        l2: float = 0.0,
        backend: str | Backend | None = None,
        dtype: str = "float32",
        seed: int | np.random.Generator = 0,
    ):
        self._configure(n_inputs, hidden, n_outputs, activation, task, l2, backend, dtype)
        # the size follows from the description: refused before a weight is drawn
        budget.check(
            budget.estimate(n_inputs, self.hidden, n_outputs, dtype=self.dtype), self.backend
        )
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(validate("seed", seed))
        )

        def xavier(i: int, n_in: int, spec: LayerSpec) -> tuple:
            W = xavier_uniform(rng, n_in, spec.units, self.dtype, shape=(n_in, spec.width))
            return W, np.zeros(spec.width, self.dtype)

        self.layers = self._make_layers(xavier)

    def _configure(
        self, n_inputs: int, hidden: Any, n_outputs: int, activation: str | Sequence[str],
        task: str, l2: float, backend: str | Backend | None, dtype: str,
    ) -> None:  # fmt: skip
        """Check and store the network's description (shared by both constructors)."""
        self.backend = get_backend(backend)
        self.xp = self.backend.xp
        self.dtype = validate("dtype", str(dtype))
        self.n_inputs = validate("n_inputs", n_inputs)
        self.n_outputs = validate("n_outputs", n_outputs)
        self.hidden = parse_hidden(hidden)
        self.activations = per_layer_activations(activation, self.hidden)
        self.loss = F.loss_for_task(task)
        self.task = task
        if task == "binary" and self.n_outputs != 1:
            raise ConfigError("task 'binary' has exactly one output unit (n_outputs=1)")
        self.l2 = validate("l2", l2)
        self.meta: dict = {}  # normalization/training info carried by model files

    def _make_layers(self, weights: WeightSource) -> list:
        """The hidden layers and the linear output layer, their arrays from ``weights``.

        All of them go to the device in one copy, as one flat buffer; each layer holds
        views of it.
        """
        host, n_in = {}, self.n_inputs
        specs = [*self.hidden, LayerSpec(self.n_outputs)]
        for i, spec in enumerate(specs, start=1):
            host[f"W{i}"], host[f"b{i}"] = weights(i, n_in, spec)
            n_in = spec.units
        self.layout = Layout({k: v.shape for k, v in host.items()})
        buffer = self.backend.put(self.layout.pack_host(host, self.dtype))
        with self.backend.scope():
            self._params = self.layout.views(self.xp, buffer)
        layers = []
        for i, (spec, act) in enumerate(zip(specs, [*self.activations, "linear"], strict=True), 1):
            W, b = self._params[f"W{i}"], self._params[f"b{i}"]
            layers.append(
                Maxout(self.xp, W, b, spec.pieces) if spec.is_maxout else Dense(self.xp, W, b, act)
            )
        return layers

    def config(self) -> dict:
        """Everything needed to rebuild this network (stored in model files)."""
        return {
            "n_inputs": self.n_inputs,
            "hidden": [str(h) for h in self.hidden],
            "n_outputs": self.n_outputs,
            "activations": list(self.activations),
            "task": self.task,
            "l2": self.l2,
            "dtype": self.dtype,
        }

    @classmethod
    def from_params(cls, config: dict, params: dict, backend: str | Backend | None = None) -> MLP:
        """Rebuild a network from :meth:`config` and host parameter arrays ``W1, b1, ...``."""
        model = cls.__new__(cls)
        model._configure(
            config["n_inputs"],
            config["hidden"],
            config["n_outputs"],
            config["activations"],
            config["task"],
            config.get("l2", 0.0),
            backend,
            config["dtype"],
        )
        expected = {f"{n}{i}" for i in range(1, len(model.hidden) + 2) for n in "Wb"}
        if set(params) != expected:
            raise ConfigError(
                f"parameter names {sorted(params)} do not match the network's {sorted(expected)}"
            )

        def stored(i: int, n_in: int, spec: LayerSpec) -> tuple:
            for name, shape in (("W", (n_in, spec.width)), ("b", (spec.width,))):
                got = tuple(np.shape(params[f"{name}{i}"]))
                if got != shape:
                    raise ConfigError(f"{name}{i} has shape {got}, the network needs {shape}")
            return np.asarray(params[f"W{i}"]), np.asarray(params[f"b{i}"])

        model.layers = model._make_layers(stored)
        return model

    def to(self, backend: str | Backend) -> MLP:
        """A copy of this network on another backend (``"cpu"``, ``"gpu"``, ...)."""
        model = MLP.from_params(self.config(), self.params_numpy(), backend)
        model.meta, model.temperature = dict(self.meta), self.temperature
        return model

    # -- parameters ------------------------------------------------------------
    @property
    def params(self) -> FlatParams:
        """Parameter arrays keyed ``W1, b1, W2, b2, ...`` (the layers' own arrays).

        Each is a view of one flat device buffer, ``params.buffer`` (weights first).
        """
        return self._params

    @on_device
    def set_params(self, params: dict) -> None:
        """Write every parameter, in place, from host or device arrays of matching shapes.

        The arrays keep their identity, so an optimizer bound to
        :attr:`params` (and any other view of them) sees the new values.
        """
        current = self.params
        if current.same_layout(params):  # a snapshot: one copy of the whole buffer
            current.buffer[...] = self.backend.put(params.buffer, self.dtype)
            return
        if set(params) != set(current):
            raise ConfigError(
                f"parameter names {sorted(params)} do not match the network's {sorted(current)}"
            )
        for key, target in current.items():
            value = params[key]
            if tuple(value.shape) != tuple(target.shape):
                raise ConfigError(
                    f"{key} has shape {tuple(value.shape)}, the network needs {tuple(target.shape)}"
                )
            target[...] = self.backend.put(value, self.dtype)

    def params_numpy(self) -> dict:
        """Host copies of all parameters (never views of the live arrays): one copy."""
        host = np.array(self.backend.get(self.params.buffer), copy=True)
        return {k: v for k, v in self.layout.views(np, host).items()}

    @on_device
    def copy_params(self) -> FlatParams:
        """A device copy of all parameters (a snapshot to restore later): one copy."""
        return self.layout.views(self.xp, self.xp.asarray(self.params.buffer, copy=True))

    @property
    def n_params(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.params.values()))

    @property
    def layer_sizes(self) -> list[int]:
        return [self.n_inputs] + [h.units for h in self.hidden] + [self.n_outputs]

    # -- math --------------------------------------------------------------------
    @on_device
    def logits(self, X: Array, train: bool = False, masks: list | None = None) -> Array:
        """Output pre-activation z, shape (N, n_outputs).

        ``masks`` (training only) is one inverted-dropout mask per hidden layer,
        each (N, units) holding 0 or 1/(1-p); it multiplies that layer's output.
        """
        h = X
        for j, layer in enumerate(self.layers):
            h = layer.forward(h, train)
            if masks is not None and j < len(masks):
                h = h * masks[j]
        return h

    @on_device
    def forward(self, X: ArrayLike) -> Array:
        """Network output y = g(z): probabilities (of the logits over :attr:`temperature`),
        sigmoid values or regression values."""
        return self.loss.output(self.xp, self._scaled(self.logits(self.check_input(X))))

    def _scaled(self, z: Array) -> Array:
        """Classifier logits over the calibration temperature (see :mod:`mlp_xp.calibration`)."""
        return z / self.temperature if self.task == "classify" and self.temperature != 1.0 else z

    predict_proba = forward

    @on_device
    def predict(self, X: ArrayLike) -> Array:
        """Class labels (classify), 0/1 (binary) or values (regress)."""
        z = self.logits(self.check_input(X))
        if self.task == "classify":
            return self.xp.argmax(z, axis=1)
        if self.task == "binary":
            return self.xp.astype(z[:, 0] > 0, self.xp.int64)
        return z

    @on_device
    def targets(self, labels: Array) -> Array:
        """Encode device labels as the target array t (one-hot for classify)."""
        return self.loss.targets(self.xp, labels, self.n_outputs, self.backend.dtype(self.dtype))

    @on_device
    def penalty(self) -> Array:
        """(lambda/2) sum ||W||^2 over weight matrices (a device scalar)."""
        w = self.params.weights
        return (0.5 * self.l2) * (w @ w)  # an inner product (BLAS dot): no temporary W * W

    @on_device
    def loss_and_grads(
        self, X: Array, T: Array, masks: list | None = None, *, with_penalty: bool = True,
        out: FlatParams | None = None,
    ) -> tuple[Array, FlatParams]:  # fmt: skip
        """Loss E (a device scalar) and dE/dparam for batch X, targets T.

        The gradients are views of one new flat buffer (``grads.buffer``, laid out like
        :attr:`params`) and always include the L2 term ``lambda W``. The loss includes
        the penalty ``(lambda/2) ||W||^2`` unless ``with_penalty=False``: the
        training loop adds it once per logged epoch instead of at every step.
        ``masks`` are optional dropout masks, as in :meth:`logits`. ``out``, a
        :class:`~mlp_xp.flat.FlatParams` laid out like :attr:`params` (e.g. a training
        step's own buffer), receives the gradients and is returned.
        """
        xp = self.xp
        direct = self.backend.writes_out  # the layers write straight into the flat buffer
        if direct and out is None:
            buffer = xp.empty(self.layout.size, dtype=self.params.buffer.dtype, device=X.device)
            out = self.layout.views(xp, buffer)
        ops = LayerOps(self, X, T, masks, out if direct else None)
        E = backprop(ops, len(self.layers))
        grads: Any
        if direct:
            grads = out
        else:
            grads = self.layout.pack(xp, ops.grads)  # one concatenation into a flat buffer
            if out is not None:
                out.buffer[...] = grads.buffer
                grads = out
        if self.l2:
            w = grads.weights
            w += self.l2 * self.params.weights
        if self.l2 and with_penalty:
            E = E + self.penalty()
        return E, grads

    @on_device
    def loss_value(self, X: Array, T: Array) -> Array:
        """E for a batch, including the L2 penalty (no cache kept)."""
        E = self.loss.value(self.xp, self.logits(X), T)
        return E + self.penalty() if self.l2 else E

    @on_device
    def evaluate(
        self,
        X: ArrayLike,
        labels: ArrayLike,
        batch_size: int = 4096,
        *,
        check: bool = True,
        bins: bool = False,
    ) -> dict:
        """Mean loss (with penalty) and accuracy (classify/binary) or MSE (regress).

        Returns host floats: ``{"loss", "accuracy" or "mse", "samples"}``, and for
        classifiers ``"ece"``, the 15-bin expected calibration error; the loss and ECE
        are of the probabilities at :attr:`temperature`. ``check=False`` skips checking
        ``labels`` (a few values read back to the host): for labels already checked and
        encoded, as the trainer's held-out split is. ``bins=True`` adds a classifier's
        per-bin sums (``"bins"``: count, confidence, hits), from which the ECE of several
        sets together is computed (:meth:`mlp_xp.calibration.Reliability.from_sums`).
        """
        return metrics.evaluate(self, X, labels, batch_size, check=check, bins=bins)

    def check_input(self, X: ArrayLike) -> Array:
        """X on the model's device (in place, or moved once), ``n_inputs`` wide
        (:func:`mlp_xp.arrays.as_rows`)."""
        return as_rows(self.backend, X, self.n_inputs)

    @property
    def device(self) -> str:
        """Where the parameters live, as :meth:`to` and ``backend=`` take it (``"gpu:1"``)."""
        return self.backend.spec

    def __repr__(self) -> str:
        sizes = "-".join(str(h) for h in [self.n_inputs, *self.hidden, self.n_outputs])
        return (
            f"MLP({sizes}, activations={self.activations}, task={self.task!r}, "
            f"l2={self.l2}, dtype={self.dtype}, device={self.device!r})"
        )
