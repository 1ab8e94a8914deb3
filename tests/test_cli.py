"""The command line: the contract's commands, JSON output, and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mlp_xp.backend import gpu_probe
from mlp_xp.cli import main
from mlp_xp.data import write_idx

from .helpers import idx_folder


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mlp_xp", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model.npz"
    code = main(["train", "--epochs", "3", "--device", "cpu", "--out", str(out), "--json",
                 "--augment", "none"])
    assert code == 0
    return out


def test_train_json_has_the_contract_fields(trained, capsys):
    out = trained.parent / "again.npz"
    assert main(["train", "--epochs", "2", "--hidden", "64", "--device", "cpu", "--out", str(out),
                 "--json", "--augment", "none"]) == 0
    result = last_json(capsys.readouterr().out)
    for key in ("backend", "device", "epochs", "epoch_seconds", "train_loss", "val_accuracy",
                "model"):
        assert key in result
    assert result["backend"] == "numpy" and result["epochs"] == 2
    assert len(result["epoch_seconds"]) == 2 and result["model"] == str(out)
    assert result["val_accuracy"] > 0.8


def test_evaluate_json(trained, capsys):
    assert main(["evaluate", str(trained), "--device", "cpu", "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["split"] == "val" and result["samples"] == 1000
    assert result["backend"] == "numpy" and 0.85 < result["accuracy"] <= 1.0
    assert result["loss"] > 0


def test_predict_idx_and_npy(trained, tmp_path, digits, capsys):
    imgs = digits.images[[0, 600, 4999]]
    write_idx(tmp_path / "three.idx", imgs)
    np.save(tmp_path / "one.npy", digits.images[1200])
    assert main(["predict", str(trained), str(tmp_path / "three.idx"), str(tmp_path / "one.npy"),
                 "--device", "cpu", "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert [r["input"].rsplit("/", 1)[-1] for r in result] == \
        ["three.idx[0]", "three.idx[1]", "three.idx[2]", "one.npy"]
    assert all(0 <= r["digit"] <= 9 and 0 < r["probability"] <= 1 for r in result)
    assert all(len(r["top3"]) == 3 for r in result)
    assert sum(r["digit"] == t for r, t in zip(result, [0, 1, 9, 2])) >= 3


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


def test_python_dash_m_and_a_folder_of_idx_files(tmp_path):
    folder = idx_folder(tmp_path / "d", n=50)
    out = cli("train", "--data", folder, "--epochs", "1", "--hidden", "8", "--device", "cpu",
              "--out", tmp_path / "m.npz", "--json", "--augment", "none")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["epochs"] == 1


@pytest.mark.parametrize("args, match", [
    (["train", "--lr", "-1"], "learning rate"),
    (["train", "--lr", "abc"], "invalid float"),
    (["train", "--epochs", "0"], "epochs"),
    (["train", "--hidden", "300,-5"], "positive integer"),
    (["train", "--activation", "swish"], "unknown activation"),
    (["train", "--optimizer", "rmsprop"], "invalid choice"),
    (["train", "--data", "/nonexistent/folder"], "no such folder"),
    (["train", "--device", "tpu"], "unknown device"),
    (["evaluate", "/nonexistent/model.npz"], "no such model file"),
    (["predict", "/nonexistent/model.npz", "x.npy"], "no such model file"),
])
def test_user_errors_are_one_line_and_exit_2(args, match, capsys, tmp_path):
    code = main(args + (["--out", str(tmp_path / "m.npz")] if args[0] == "train" else []))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and match in err


def test_argparse_errors_are_one_line_exit_2():
    out = cli("train", "--epochs", "many")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "invalid int value" in out.stderr
