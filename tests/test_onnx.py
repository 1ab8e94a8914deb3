"""ONNX export: the graph is standard and checked, and ONNX Runtime reproduces mlp_xp."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mlp_xp import MLP, export_onnx
from mlp_xp.cli import main
from mlp_xp.errors import ConfigError, OutputError
from mlp_xp.onnx import OPSET, to_onnx

ACTIVATIONS = ["linear", "sigmoid", "tanh", "relu", "softplus"]
TASKS = {"classify": 4, "binary": 1, "regress": 3}


def run(path_or_proto, X):
    source = path_or_proto if isinstance(path_or_proto, str) else path_or_proto.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})


def model_and_inputs(hidden, activation, task, dtype, seed=0):
    model = MLP(6, hidden, TASKS[task], activation=activation, task=task, backend="cpu",
                dtype=dtype, seed=seed)  # fmt: skip
    X = np.random.default_rng(seed).normal(0.0, 2.0, (41, 6)).astype(dtype)
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_runtime_reproduces_every_activation_and_task(tmp_path, activation, task, dtype):
    model, X = model_and_inputs((9, 7), activation, task, dtype)
    path = export_onnx(model, tmp_path / "m.onnx")
    outputs = run(str(path), X)
    assert outputs[0].dtype == np.dtype(dtype)
    np.testing.assert_allclose(outputs[0], model.forward(X), rtol=1e-5, atol=1e-5)
    if task == "regress":
        assert len(outputs) == 1
    else:
        np.testing.assert_array_equal(outputs[1], model.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("task", list(TASKS))
def test_onnx_runtime_reproduces_maxout(task, dtype):
    model, X = model_and_inputs(("maxout:8:3", 5, "maxout:4:2"), "tanh", task, dtype)
    proto = to_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("ReduceMax") == 2 and ops.count("Reshape") >= 2 and ops.count("Tanh") == 1
    outputs = run(proto, X)
    np.testing.assert_allclose(outputs[0], model.forward(X), rtol=1e-5, atol=1e-5)
    if task != "regress":
        np.testing.assert_array_equal(outputs[1], model.predict(X))


def test_large_logits_stay_finite_and_equal():
    model, X = model_and_inputs((5,), "softplus", "classify", "float32")
    X = X * 1e3  # softplus and softmax far from zero
    outputs = run(to_onnx(model), X)
    assert np.isfinite(outputs[0]).all()
    np.testing.assert_allclose(outputs[0], model.forward(X), rtol=1e-5, atol=1e-5)


def test_the_graph_is_standard_checked_and_described():
    model, _ = model_and_inputs((9, 7), "relu", "classify", "float32")
    model.meta["normalization"] = {"scale": 1 / 255, "offset": 0.0}
    proto = to_onnx(model, name="digits")
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import)
    assert proto.graph.name == "digits" and proto.producer_name == "mlp_xp"
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax", "ArgMax"]
    shape = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert proto.graph.input[0].name == "input" and shape == ["N", 6]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["mlp_xp.model"]) == model.config()
    assert json.loads(props["mlp_xp.normalization"])["scale"] == pytest.approx(1 / 255)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_fitted_estimator_exports_its_network_and_classes(tmp_path):
    from sklearn.datasets import load_iris

    from mlp_xp.sklearn import MLPClassifier

    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier((8,), max_iter=50, learning_rate_init=0.01, random_state=0).fit(X, labels)
    path = export_onnx(clf, tmp_path / "iris.onnx")
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    classes = np.array(json.loads(props["mlp_xp.classes"]))
    probs, label = run(str(path), X.astype(np.float32))
    np.testing.assert_allclose(probs, clf.predict_proba(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(classes[label], clf.predict(X))


def test_export_refuses_what_it_cannot_write(tmp_path):
    model, _ = model_and_inputs((3,), "relu", "regress", "float32")
    with pytest.raises(OutputError, match="cannot write it"):
        export_onnx(model, tmp_path)  # a folder
    with pytest.raises(ConfigError, match="needs an mlp_xp MLP or fitted estimator"):
        to_onnx(object())
    target = tmp_path / "keep.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ConfigError):
        export_onnx("not a model", target)
    assert target.read_bytes() == b"previous"  # nothing half-written


def test_cli_export_of_a_trained_model_serves_the_same_digits(tmp_path, capsys, digits):
    from mlp_xp import load_model
    from mlp_xp.data import Normalization

    model_file = tmp_path / "digits.npz"
    argv = "train --epochs 1 --hidden 32 --augment none --device cpu --quiet --out".split()
    assert main([*argv, str(model_file)]) == 0
    capsys.readouterr()
    assert main(["export", str(model_file), str(tmp_path / "digits.onnx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert info["input"] == {"name": "input", "dtype": "float32", "shape": ["N", 784]}
    assert info["outputs"] == ["output", "label"] and info["opset"] == OPSET
    model = load_model(model_file, "cpu")
    assert Normalization.from_meta(info["normalization"]).scale == pytest.approx(1 / 255)
    # served as the README shows: the normalization read from the file's metadata
    session = ort.InferenceSession(info["onnx"], providers=["CPUExecutionProvider"])
    norm = json.loads(session.get_modelmeta().custom_metadata_map["mlp_xp.normalization"])
    x = (digits.images[:64].reshape(64, -1) * norm["scale"] + norm["offset"]).astype(np.float32)
    probs, label = session.run(None, {"input": x})
    np.testing.assert_allclose(probs, model.forward(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label, model.predict(x))
    assert main(["export", str(model_file), str(tmp_path / "again.onnx")]) == 0
    out = capsys.readouterr().out
    assert "784-32-10 classify network, ONNX opset 17" in out and "x = pixel / 255" in out


def test_without_the_onnx_package_export_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    model, _ = model_and_inputs((3,), "relu", "regress", "float32")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import onnx now fails
    with pytest.raises(ConfigError, match=r"pip install '\.\[onnx\]'"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.npz"), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such model file" in err[0]
    assert not (tmp_path / "m.onnx").exists()
