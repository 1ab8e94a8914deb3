"""Failure is a result: a run that learned nothing says so, exits 2 and keeps the model that
was there; the default learning rate of every optimizer and task learns."""

import json

import numpy as np
import pytest

from mlp_xp import MLP, load_model, save_model
from mlp_xp.cli import main
from mlp_xp.cli.finish import GROWTH, failure
from mlp_xp.train.config import default_lr

SHORT = "--hidden 32 --epochs 2 --device cpu --augment none --quiet".split()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_run_that_learned_nothing_exits_2_and_saves_beside_the_existing_model(tmp_path, capsys):
    out = tmp_path / "model.npz"
    save_model(out, MLP(784, (8,), 10, backend="cpu", seed=1))
    good = out.read_bytes()
    assert main(["train", *SHORT, "--lr", "5", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    beside = tmp_path / "model.failed.npz"
    assert line.startswith("mlp-xp train: error: training failed: ")  # 10%, loss 2.4 -> 330
    assert "blew up" in line or "is chance" in line
    assert f"saved to {beside}; {out} is left as it was" in line
    assert out.read_bytes() == good
    assert load_model(beside, "cpu").layer_sizes == [784, 32, 10]


def test_a_diverged_run_keeps_the_existing_model_too(tmp_path, capsys):
    out = tmp_path / "model.npz"
    save_model(out, MLP(784, (8,), 10, backend="cpu", seed=1))
    good = out.read_bytes()
    argv = ["train", *SHORT, "--lr", "1e30", "--optimizer", "sgd", "--out", str(out)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "diverged" in one_line(captured.err)
    assert f"saved the last good parameters to {tmp_path / 'model.failed.npz'}" in captured.out
    assert out.read_bytes() == good


def test_the_verdict_on_scores_and_losses():
    labels = np.arange(1000) % 10
    assert "is chance" in failure("classify", {"accuracy": 0.11, "loss": 2.3}, labels, 2.3)
    assert failure("classify", {"accuracy": 0.2, "loss": 2.0}, labels, 2.3) is None
    blown = failure("classify", {"accuracy": 0.5, "loss": 7.6e18}, labels, 2.3)
    assert "grew from 2.3 (untrained) to 7.6e+18" in blown
    assert "blew up" in failure("classify", {"accuracy": 0.5, "loss": GROWTH * 2.4}, labels, 2.3)
    values = labels.astype(np.float64)  # variance 8.25, as the digits' values
    assert "predicting the mean" in failure("regress", {"mse": 7.60, "loss": 3.8}, values, 30)
    assert failure("regress", {"mse": 1.0, "loss": 0.5}, values, 30) is None
    binary = (labels == 3).astype(np.int64)  # always "not 3" scores 90%
    assert "scores 90.00%" in failure("binary", {"accuracy": 0.91, "loss": 0.3}, binary, 0.7)
    assert failure("binary", {"accuracy": 0.98, "loss": 0.1}, binary, 0.7) is None
    assert failure("classify", {"accuracy": 0.1, "loss": 2.3}, labels[:50], 2.3) is None


@pytest.mark.parametrize("task", ["classify", "binary", "regress"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_the_default_learning_rate_of_each_optimizer_and_task_learns(
    task, optimizer, tmp_path, capsys
):
    positive = ["--positive", "3"] if task == "binary" else []
    argv = ["train", *SHORT, "--task", task, *positive, "--optimizer", optimizer, "--json"]
    assert main([*argv, "--out", str(tmp_path / "m.npz")]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = 1e-3 if optimizer == "adam" else (0.01 if task == "regress" else 0.08)
    assert result["optimizer"]["lr"] == default_lr(optimizer, task) == expected
    if task == "regress":  # the digits' values have a variance of about 8.25
        assert result["val_mse"] < 6.0
    else:
        assert result["val_accuracy"] > (0.8 if task == "classify" else 0.95)
