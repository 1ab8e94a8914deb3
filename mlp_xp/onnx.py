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
        raise ConfigError("ONNX export needs onnx: pip install 'mlp-xp[onnx]'") from None
    return onnx


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
    from onnx import TensorProto, helper, numpy_helper

    extra: dict = {}
    if not isinstance(model, MLP):
        classes = getattr(model, "classes_", None)
        if classes is not None:
            extra["mlp_xp.classes"] = json.dumps(np.asarray(classes).tolist())
        model = getattr(model, "model_", model)
    if not isinstance(model, MLP):
        raise ConfigError(f"export needs an mlp_xp MLP or fitted estimator, got {type(model)}")
    params = model.params_numpy()
    if sum(a.nbytes for a in params.values()) > _MAX_BYTES:
        raise ConfigError("the network's weights exceed the 2 GiB an ONNX file can hold")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    nodes, inits = [], [numpy_helper.from_array(a, k) for k, a in params.items()]

    def node(op: str, inputs: list, output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def const(values: Any, key: str, dtype: Any = np.int64) -> str:
        if key not in {t.name for t in inits}:
            inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), key))
        return key

    h, last = "input", len(model.layers)
    for i, layer in enumerate(model.layers, start=1):
        h = node("Gemm", [h, f"W{i}", f"b{i}"], f"a{i}")
        if layer.kind == "maxout":
            shape = const([-1, layer.n_out, layer.pieces], f"maxout_shape{i}")
            pieces = node("Reshape", [h, shape], f"pieces{i}")
            h = node("ReduceMax", [pieces], f"h{i}", axes=[2], keepdims=0)
        elif i < last and model.activations[i - 1] == "softplus" and model.dtype == "float64":
            # ONNX Runtime has no float64 Softplus kernel: max(a, 0) + ln(1 + e^-|a|)
            e = node("Exp", [node("Neg", [node("Abs", [h], f"abs{i}")], f"neg{i}")], f"exp{i}")
            one = const([1], "one", model.dtype)
            log = node("Log", [node("Add", [e, one], f"plus1_{i}")], f"log{i}")
            h = node("Add", [node("Relu", [h], f"relu{i}"), log], f"h{i}")
        elif i < last and model.activations[i - 1] in _ACTIVATION_OPS:
            h = node(_ACTIVATION_OPS[model.activations[i - 1]], [h], f"h{i}")
    n, k = "N", model.n_outputs
    outputs = [helper.make_tensor_value_info("output", elem, [n, k])]
    if model.task == "classify":
        scaled = h  # the calibration temperature train fitted, as predict uses it
        if model.temperature != 1.0:
            scaled = node("Div", [h, const([model.temperature], "temperature", model.dtype)], "z")
        node("Softmax", [scaled], "output", axis=1)
        node("ArgMax", [h], "label", axis=1, keepdims=0)
    elif model.task == "binary":
        node("Sigmoid", [h], "output")
        z = node("Reshape", [h, const([-1], "flat")], "z")
        positive = node("Greater", [z, const([0], "zero", model.dtype)], "gt")
        node("Cast", [positive], "label", to=TensorProto.INT64)
    else:
        node("Identity", [h], "output")
    if model.task != "regress":
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, [n]))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", elem, [n, model.n_inputs])],
        outputs,
        inits,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="mlp_xp",
        producer_version=_version(),
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


def _version() -> str:
    return __version__
