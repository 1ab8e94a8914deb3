"""ONNX export: a trained network as a standard ONNX graph, built and checked with ``onnx``.

Each layer becomes standard operators of the default domain, so any ONNX
runtime serves the file:

``Dense``      ``Gemm(x, W, b)`` then ``Relu`` / ``Sigmoid`` / ``Tanh`` / ``Softplus``
               (nothing for ``linear``)
``Maxout``     ``Gemm`` then ``Reshape`` to (N, units, pieces) and ``ReduceMax`` over pieces
output         ``classify``: ``Softmax`` -> ``output``, ``ArgMax`` -> ``label``;
               ``binary``: ``Sigmoid`` -> ``output``, ``z > 0`` -> ``label``;
               ``regress``: the linear output -> ``output``

The graph takes ``input`` of shape (N, n_inputs) in the network's dtype (N is
free) and gives what :meth:`~mlp_xp.model.MLP.forward` and
:meth:`~mlp_xp.model.MLP.predict` give. It reads network inputs: pixels are
normalised first, by the rule the file's metadata records
(``mlp_xp.normalization``: ``x = pixel * scale + offset``), as ``mlp-xp predict``
does. The file is opset 17 with the matching IR version, so ONNX Runtime 1.13
and later load it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import ConfigError
from .fileio import atomic_write_bytes
from .model import MLP

__all__ = ["export_onnx", "to_onnx", "OPSET"]

#: The ONNX operator set the graph is written against.
OPSET = 17

#: ONNX operator of each hidden-layer activation (``linear`` adds none).
_ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}

#: A single ONNX file holds at most 2 GiB (protobuf's limit); leave room for the graph.
_MAX_BYTES = 2**31 - 2**24


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs onnx: pip install '.[onnx]'") from None
    return onnx


class _Graph:
    """The nodes and initializers of the graph being built."""

    def __init__(self, params: dict, dtype: str):
        from onnx import numpy_helper

        self.to_tensor, self.dtype = numpy_helper.from_array, dtype
        self.nodes: list = []
        self.inits = [self.to_tensor(a, k) for k, a in params.items()]

    def node(self, op: str, inputs: list, output: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def const(self, values: Any, key: str, dtype: Any = np.int64) -> str:
        if key not in {t.name for t in self.inits}:
            self.inits.append(self.to_tensor(np.asarray(values, dtype=dtype), key))
        return key


def _layers(g: _Graph, model: MLP) -> str:
    """The affine layers and hidden activations; returns the logits' name."""
    h, last = "input", len(model.layers)
    for i, layer in enumerate(model.layers, start=1):
        h = g.node("Gemm", [h, f"W{i}", f"b{i}"], f"a{i}")
        activation = model.activations[i - 1] if i < last else None
        if layer.kind == "maxout":
            shape = g.const([-1, layer.n_out, layer.pieces], f"maxout_shape{i}")
            pieces = g.node("Reshape", [h, shape], f"pieces{i}")
            h = g.node("ReduceMax", [pieces], f"h{i}", axes=[2], keepdims=0)
        elif activation == "softplus" and model.dtype == "float64":
            # ONNX Runtime has no float64 Softplus kernel: max(a, 0) + ln(1 + e^-|a|)
            neg = g.node("Neg", [g.node("Abs", [h], f"abs{i}")], f"neg{i}")
            e = g.node("Exp", [neg], f"exp{i}")
            one = g.const([1], "one", model.dtype)
            log = g.node("Log", [g.node("Add", [e, one], f"plus1_{i}")], f"log{i}")
            h = g.node("Add", [g.node("Relu", [h], f"relu{i}"), log], f"h{i}")
        elif activation in _ACTIVATION_OPS:
            h = g.node(_ACTIVATION_OPS[activation], [h], f"h{i}")
    return h


def _head(g: _Graph, model: MLP, h: str) -> list:
    """The task's outputs (probabilities or values, and labels); returns their value infos."""
    from onnx import TensorProto, helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    outputs = [helper.make_tensor_value_info("output", elem, ["N", model.n_outputs])]
    if model.task == "classify":
        scaled = h  # the calibration temperature train fitted, as predict uses it
        if model.temperature != 1.0:
            t = g.const([model.temperature], "temperature", model.dtype)
            scaled = g.node("Div", [h, t], "z")
        g.node("Softmax", [scaled], "output", axis=1)
        g.node("ArgMax", [h], "label", axis=1, keepdims=0)
    elif model.task == "binary":
        g.node("Sigmoid", [h], "output")
        z = g.node("Reshape", [h, g.const([-1], "flat")], "z")
        positive = g.node("Greater", [z, g.const([0], "zero", model.dtype)], "gt")
        g.node("Cast", [positive], "label", to=TensorProto.INT64)
    else:
        g.node("Identity", [h], "output")
    if model.task != "regress":
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
    return outputs


def _network(model: Any) -> tuple[MLP, dict]:
    """The MLP to export and the metadata an estimator adds (its ``classes_``)."""
    extra: dict = {}
    if not isinstance(model, MLP):
        classes = getattr(model, "classes_", None)
        if classes is not None:
            extra["mlp_xp.classes"] = json.dumps(np.asarray(classes).tolist())
        model = getattr(model, "model_", model)
    if not isinstance(model, MLP):
        raise ConfigError(f"export needs an mlp_xp MLP or fitted estimator, got {type(model)}")
    return model, extra


def to_onnx(model: MLP, *, name: str = "mlp_xp") -> Any:
    """The network as a checked :class:`onnx.ModelProto` (see the module docstring).

    Parameters
    ----------
    model : MLP or fitted mlp_xp.sklearn estimator
        An estimator's network (``est.model_``) is exported, with its ``classes_``
        recorded in the metadata (``mlp_xp.classes``).
    name : str
        The graph's name.
    """
    onnx = _onnx()
    from onnx import helper

    model, extra = _network(model)
    params = model.params_numpy()
    if sum(a.nbytes for a in params.values()) > _MAX_BYTES:
        raise ConfigError("the network's weights exceed the 2 GiB an ONNX file can hold")
    g = _Graph(params, model.dtype)
    outputs = _head(g, model, _layers(g, model))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    inputs = [helper.make_tensor_value_info("input", elem, ["N", model.n_inputs])]
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", OPSET)]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="mlp_xp",
        producer_version=__version__,
        doc_string=f"{model!r}; input: network inputs (normalised pixels)",
    )
    meta = {"mlp_xp.model": json.dumps(model.config()), **extra}
    if "normalization" in model.meta:
        meta["mlp_xp.normalization"] = json.dumps(model.meta["normalization"])
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: MLP, path: str | os.PathLike, *, name: str = "mlp_xp") -> Path:
    """Write the network to ``path`` as an ONNX model (atomic: whole file or none).

    Parameters
    ----------
    model : MLP or fitted mlp_xp.sklearn estimator
    path : str or Path

    Returns
    -------
    Path
        Where the file was written.

    Raises
    ------
    ConfigError
        Not a network, or the onnx package is missing.
    OutputError
        The file cannot be written (the previous file, if any, is kept).

    Examples
    --------
    >>> export_onnx(load_model("model.npz"), "model.onnx")  # doctest: +SKIP
    >>> import onnxruntime as ort  # doctest: +SKIP
    >>> ort.InferenceSession("model.onnx").run(None, {"input": x})  # doctest: +SKIP
    """
    return atomic_write_bytes(Path(path), to_onnx(model, name=name).SerializeToString())
