"""The worked examples run in seconds and print what they promise."""

from pathlib import Path

from .helpers import load_module

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    return load_module(EXAMPLES / f"{name}.py")


def test_notes_table_is_learned_to_100_percent(capsys):
    result = load("notes_table").main()
    assert result["accuracy"] == 1.0 and not result["perceptron_converged"]
    assert "accuracy on the table: 100%" in capsys.readouterr().out


def test_regression_fits_the_smooth_function(capsys):
    assert load("regression").main()["mse"] < 5e-3
    assert "test MSE" in capsys.readouterr().out


def test_binary_classifier_with_sigmoid_output(capsys):
    result = load("binary").main()
    assert result["accuracy"] > 0.95
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("task, extra, key", [
    ("binary", ["--positive", "7"], "val_accuracy"),
    ("regress", [], "val_mse"),
])
def test_cli_tasks_binary_and_regress(tmp_path, capsys, task, extra, key):
    from mlp_xp.cli import main
    import json

    assert main(["train", "--task", task, *extra, "--epochs", "2", "--hidden", "maxout:32:2,16",
                 "--activation", "relu,tanh", "--optimizer", "adam", "--lr", "0.001",
                 "--device", "cpu", "--out", str(tmp_path / "m.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result[key] is not None
    if task == "binary":
        assert result[key] > 0.9
