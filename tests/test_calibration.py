"""Expected calibration error and temperature scaling (mlp_xp.calibration)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlp_xp import MLP, fit
from mlp_xp.calibration import (
    Reliability,
    bin_sums,
    cross_fitted_ece,
    fit_temperature,
    reliability,
)
from mlp_xp.checkpoint import load_model, save_model
from mlp_xp.cli import main
from mlp_xp.data import load_digits, scale_images, stratified_split
from mlp_xp.errors import ModelFileError


def _reference_ece(z: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """The textbook ECE, one bin at a time, in float64 NumPy."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf >= lo) & ((conf < hi) if b < bins - 1 else (conf <= hi))
        if inside.any():
            total += inside.sum() * abs(
                (pred[inside] == labels[inside]).mean() - conf[inside].mean()
            )
    return total / len(labels)


def test_the_ece_is_the_textbook_one_on_every_backend(backend):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (500, 10))
    labels = rng.integers(0, 10, 500)
    sums = bin_sums(backend.xp, backend.put(z, "float64"), backend.put(labels, np.int64))
    ece = Reliability.from_sums(backend.get(sums)).ece
    assert ece == pytest.approx(_reference_ece(z, labels), abs=1e-12)


@pytest.fixture(scope="module")
def overconfident():
    """A digit classifier made over-confident (its last layer scaled by 4), with a
    held-out split cut in two: one to fit the temperature, one it never sees."""
    digits = load_digits()
    X, y = scale_images(digits.images), digits.labels
    tr, val = stratified_split(y, 0.4, 0)
    model = MLP(784, (64,), 10, backend="cpu", seed=0)
    fit(model, X[tr], y[tr], epochs=4, augment="none")
    params = model.params_numpy()
    params["W2"], params["b2"] = 4 * params["W2"], 4 * params["b2"]
    model.set_params(params)
    half = len(val) // 2
    return model, (X[val[:half]], y[val[:half]]), (X[val[half:]], y[val[half:]])


def test_the_fitted_temperature_lowers_held_out_nll_of_an_overconfident_model(overconfident):
    model, (X_fit, y_fit), (X_new, y_new) = overconfident
    before_fit, before_new = model.evaluate(X_fit, y_fit), model.evaluate(X_new, y_new)
    t = fit_temperature(model, X_fit, y_fit)
    assert t > 2  # it undoes most of the factor 4
    model.temperature = t
    try:
        after_fit, after_new = model.evaluate(X_fit, y_fit), model.evaluate(X_new, y_new)
    finally:
        model.temperature = 1.0
    assert after_fit["loss"] < before_fit["loss"]
    assert after_new["loss"] < before_new["loss"]  # on data T never saw too
    assert after_new["ece"] < before_new["ece"]
    assert after_new["accuracy"] == before_new["accuracy"]  # the argmax does not move
    # the minimum: nudging T either way raises the NLL it minimised
    for other in (0.9 * t, 1.1 * t):
        model.temperature = other
        assert model.evaluate(X_fit, y_fit)["loss"] > after_fit["loss"]
    model.temperature = 1.0


def test_cross_fitted_ece_scores_each_half_with_the_other_halfs_temperature(overconfident):
    model, (X, y), _ = overconfident
    crossed = cross_fitted_ece(model, X, y)
    raw = reliability(model, X, y).ece
    assert 0 <= crossed < raw
    in_sample = reliability(model, X, y, temperature=fit_temperature(model, X, y)).ece
    assert crossed != in_sample


def test_the_temperature_travels_in_the_model_file(tmp_path, overconfident):
    model, (X, y), _ = overconfident
    path = tmp_path / "m.npz"
    model.temperature = 2.5
    try:
        save_model(path, model, calibration={"temperature": 2.5})
        expected = model.forward(X[:5])
    finally:
        model.temperature = 1.0
    loaded = load_model(path, "cpu")
    assert loaded.temperature == 2.5
    np.testing.assert_allclose(loaded.forward(X[:5]), expected, rtol=1e-6)
    assert loaded.to("cpu").temperature == 2.5
    from mlp_xp.checkpoint import param_arrays, write_file  # a file save_model never writes

    meta = {"model": model.config(), "calibration": {"temperature": -1}}
    write_file(path, "model", meta, param_arrays(model))
    with pytest.raises(ModelFileError, match="calibration temperature"):
        load_model(path, "cpu")


def test_train_fits_it_evaluate_reports_ece_predict_uses_it(tmp_path, capsys):
    out, run = tmp_path / "m.npz", tmp_path / "run"
    args = ["train", "--device", "cpu", "--epochs", "2", "--hidden", "32", "--augment", "none"]
    assert main([*args, "--out", str(out), "--run-dir", str(run)]) == 0
    captured = capsys.readouterr()
    log = captured.out + captured.err
    assert "calibration: temperature" in log and "cross-fitted" in log
    record_line = next(line for line in log.splitlines() if line.startswith("held-out accuracy"))
    model = load_model(out, "cpu")
    record = model.meta["calibration"]
    assert record["temperature"] == model.temperature != 1.0
    assert record["nll_after"] <= record["nll_before"]
    assert record_line.endswith(f"ECE {100 * record['ece_after']:.2f}%")  # the model as saved
    saved = json.loads((run / "reliability.json").read_text())
    assert sum(saved["before"]["counts"]) == 1000 and saved["after"]["ece"] == record["ece_after"]

    assert main(["evaluate", str(out), "--device", "cpu", "--json"]) == 0
    calibrated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", str(out), "--device", "cpu", "--json", "--no-calibration"]) == 0
    raw = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert calibrated["ece"] == pytest.approx(record["ece_after"])
    assert raw["ece"] == pytest.approx(record["ece_before"]) and raw["temperature"] == 1.0
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0
    assert "ECE" in capsys.readouterr().out

    digit = tmp_path / "d.npy"
    np.save(digit, load_digits().images[:1])
    probs = {}
    for extra in ([], ["--no-calibration"]):
        assert main(["predict", str(out), str(digit), "--device", "cpu", "--json", *extra]) == 0
        probs[bool(extra)] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]
    assert probs[False]["digit"] == probs[True]["digit"]
    assert probs[False]["probability"] != probs[True]["probability"]


def test_onnx_export_carries_the_temperature(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from mlp_xp import export_onnx

    model = MLP(6, (5,), 4, backend="cpu", seed=1)
    model.temperature = 1.7
    X = np.random.default_rng(0).normal(0, 2, (9, 6)).astype(np.float32)
    path = export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, label = session.run(None, {"input": X})
    np.testing.assert_allclose(probs, model.forward(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label, model.predict(X))


def test_the_models_temperature_is_the_one_source_a_file_records(tmp_path):
    from mlp_xp.checkpoint import load_model, save_model

    model = MLP(6, (4,), 10, backend="cpu", seed=0)
    model.temperature = 1.5
    save_model(tmp_path / "a.npz", model, calibration={"temperature": 1.5, "ece_after": 0.01})
    loaded = load_model(tmp_path / "a.npz")
    assert loaded.temperature == 1.5 and loaded.meta["calibration"]["ece_after"] == 0.01
    loaded.temperature = 1.0  # set one, save, load: the other must not come back
    save_model(tmp_path / "b.npz", loaded)
    again = load_model(tmp_path / "b.npz")
    assert again.temperature == 1.0 and "calibration" not in again.meta
    again.temperature = 2.0
    save_model(tmp_path / "c.npz", again)
    third = load_model(tmp_path / "c.npz")
    assert third.temperature == 2.0
    assert third.meta["calibration"] == {
        "temperature": 2.0,
        "fitted_on": "set on the model (MLP.temperature)",
    }
