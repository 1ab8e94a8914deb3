"""The command line: the contract's commands, JSON output, and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mlp_xp import MLP, fit, load_model, save_model
from mlp_xp.backends import gpu_probe
from mlp_xp.cli import main
from mlp_xp.data import Normalization, stratified_split, write_idx

from .helpers import idx_folder


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "mlp_xp", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def trained(trained_run):
    return trained_run / "model.npz"


def test_train_json_has_the_contract_fields(tmp_path, capsys):
    out = tmp_path / "again.npz"
    assert (
        main(
            [
                *"train --epochs 2 --hidden 64 --device cpu --out".split(),
                str(out),
                *"--json --augment none".split(),
            ]
        )
        == 0
    )
    result = last_json(capsys.readouterr().out)
    for key in (
        "backend",
        "device",
        "epochs",
        "epoch_seconds",
        "train_loss",
        "val_accuracy",
        "model",
    ):
        assert key in result
    assert result["backend"] == "numpy" and result["epochs"] == 2
    assert len(result["epoch_seconds"]) == 2 and result["model"] == str(out)
    assert result["val_accuracy"] > 0.8


def test_evaluate_json(trained, capsys):
    assert main(["evaluate", str(trained), *"--device cpu --json".split()]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["split"] == "val" and result["samples"] == 1000
    assert result["backend"] == "numpy" and 0.85 < result["accuracy"] <= 1.0
    assert result["loss"] > 0


def test_predict_idx_and_npy(trained, tmp_path, digits, capsys):
    imgs = digits.images[[0, 600, 4999]]
    write_idx(tmp_path / "three.idx", imgs)
    np.save(tmp_path / "one.npy", digits.images[1200])
    assert (
        main(
            [
                "predict",
                str(trained),
                str(tmp_path / "three.idx"),
                str(tmp_path / "one.npy"),
                *"--device cpu --json".split(),
            ]
        )
        == 0
    )
    result = last_json(capsys.readouterr().out)
    assert [r["input"].rsplit("/", 1)[-1] for r in result] == [
        "three.idx[0]",
        "three.idx[1]",
        "three.idx[2]",
        "one.npy",
    ]
    assert all(0 <= r["digit"] <= 9 and 0 < r["probability"] <= 1 for r in result)
    assert all(len(r["top3"]) == 3 for r in result)
    assert sum(r["digit"] == t for r, t in zip(result, [0, 1, 9, 2], strict=True)) >= 3


def test_devices_lists_cpu(capsys):
    assert main(["devices", "--json"]) == 0
    rows = last_json(capsys.readouterr().out)["devices"]
    assert rows[0]["backend"] == "numpy" and rows[0]["available"]


def test_train_device_gpu_without_gpu_is_one_line_exit_2(tmp_path):
    if gpu_probe().ok:
        pytest.skip("a GPU is present")
    out = cli("train", "--device", "gpu", "--out", tmp_path / "m.npz")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "no usable GPU" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("task", ["classify", "regress"])
def test_positive_without_the_binary_task_is_refused(tmp_path, capsys, task):
    out = tmp_path / "m.npz"
    assert main(["train", "--task", task, "--positive", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--positive applies to --task binary only, got --task {task}" in err
    assert not out.exists()


def test_python_dash_m_and_a_folder_of_idx_files(tmp_path):
    folder = idx_folder(tmp_path / "d", n=50)
    out = cli(
        "train",
        "--data",
        folder,
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--device",
        "cpu",
        "--out",
        tmp_path / "m.npz",
        "--json",
        "--augment",
        "none",
    )
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["epochs"] == 1


@pytest.mark.parametrize(
    "args, match",
    [
        (["train", "--lr", "-1"], "argument --lr: learning rate must be a finite number > 0"),
        (["train", "--lr", "abc"], "learning rate must be a finite number > 0, got 'abc'"),
        (["train", "--epochs", "0"], "argument --epochs: epochs must be an integer >= 1, got '0'"),
        (["train", "--seed", "-1"], "argument --seed: seed must be an integer >= 0, got '-1'"),
        (["train", "--momentum", "1"], "momentum must be a finite number in [0, 1)"),
        ("train --optimizer adam --momentum 0.5".split(), "not adam"),
        (["train", "--hidden", "300,-5"], "a hidden layer size must be an integer >= 1"),
        (["train", "--activation", "swish"], "activation must be one of"),
        (["train", "--optimizer", "rmsprop"], "invalid choice"),
        (["train", "--data", "/nonexistent/folder"], "no such folder"),
        (["train", "--device", "tpu"], "unknown device"),
        (["evaluate", "/nonexistent/model.npz"], "no such model file"),
        (["predict", "/nonexistent/model.npz", "x.npy"], "no such model file"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, match, capsys, tmp_path):
    code = main(args + (["--out", str(tmp_path / "m.npz")] if args[0] == "train" else []))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and match in err


def test_argparse_errors_are_one_line_exit_2():
    out = cli("train", "--epochs", "many")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "epochs must be an integer >= 1, got 'many'" in out.stderr


def test_evaluate_the_test_split_of_a_folder(tmp_path, capsys):
    folder = idx_folder(tmp_path / "d", n=50, test=True)
    model = tmp_path / "m.npz"
    assert (
        main(
            [
                *"train --data".split(),
                str(folder),
                *"--epochs 1 --hidden 8 --augment none --device cpu --out".split(),
                str(model),
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["evaluate", str(model), *"--split test --device cpu --json".split()]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["split"] == "test" and result["samples"] == 20 and result["data"] == str(folder)
    assert main(["evaluate", str(model), *"--split test --data mnist-5k".split()]) == 2
    assert "no test split" in capsys.readouterr().err


def test_perceptron_on_two_digits(capsys):
    assert main("perceptron --digits 3,8 --max-epochs 3 --device cpu --json".split()) == 0
    result = last_json(capsys.readouterr().out)
    assert result["data"] == "1000 digits, 3 (-1) vs 8 (+1)" and result["epochs"] <= 3
    assert len(result["mistakes"]) == result["epochs"] and result["train_accuracy"] > 0.8
    assert main(["perceptron", "--digits", "3,3"]) == 2
    assert "two different digits" in capsys.readouterr().err


def test_evaluate_and_predict_honour_the_models_normalization(tmp_path, digits, capsys):
    """A model trained on inputs in [-1, 1] is fed [-1, 1], as its file says, not [0, 1]."""
    norm = Normalization(scale=2 / 255, offset=-1.0)
    train, val = stratified_split(digits.labels, 0.2, seed=0)
    model = MLP(784, (32,), 10, backend="cpu", seed=0)
    fit(
        model,
        norm.apply(digits.images[train]),
        digits.labels[train],
        epochs=3,
        augment="none",
        lr=0.02,
    )
    path = tmp_path / "pm1.npz"
    save_model(
        path,
        model,
        normalization=norm.to_meta(),
        data={"source": "mnist-5k", "val_fraction": 0.2, "split_seed": 0},
    )
    expected = model.evaluate(norm.apply(digits.images[val]), digits.labels[val])
    if_scaled_01 = model.evaluate(Normalization().apply(digits.images[val]), digits.labels[val])
    assert expected["accuracy"] - if_scaled_01["accuracy"] > 0.05  # the difference matters
    assert main(["evaluate", str(path), *"--device cpu --json".split()]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(expected["accuracy"])
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    np.save(tmp_path / "x.npy", digits.images[val[:5]])
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--json"]) == 0
    probs = model.forward(norm.apply(digits.images[val[:5]]))
    got = last_json(capsys.readouterr().out)
    assert [r["digit"] for r in got] == probs.argmax(axis=1).tolist()
    np.testing.assert_allclose([r["probability"] for r in got], probs.max(axis=1), rtol=1e-5)
    assert load_model(path, "cpu").meta["normalization"]["offset"] == -1.0
