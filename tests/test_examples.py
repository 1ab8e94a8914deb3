"""The worked examples run in seconds and print what they promise."""

from pathlib import Path

import numpy as np
import pytest

from .helpers import load_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    return load_module(EXAMPLES / f"{name}.py")


def test_notes_table_is_learned_and_separated(capsys):
    module = load("notes_table")
    np.testing.assert_array_equal(
        module.TABLE[:, :3], [[1.0, 0.1, 0.3], [0.1, 1.5, 1.2], [1.1, 1.1, 2.0], [0.2, 0.2, 0.3]]
    )
    result = module.main()
    assert result["accuracy"] == 1.0
    assert result["perceptron_converged"] and result["perceptron_accuracy"] == 1.0
    out = capsys.readouterr().out
    for shown in (
        "x(0)  4x3",
        "a(1)  4x4",
        "x(2)  4x4",
        "a(3)  4x2",
        "y     4x2",
        "accuracy on the table: 100%",
        "perceptron on the same table",
    ):
        assert shown in out


def test_regression_fits_the_smooth_function(capsys):
    assert load("regression").main()["mse"] < 5e-3
    assert "test MSE" in capsys.readouterr().out


def test_binary_classifier_with_sigmoid_output(capsys):
    result = load("binary").main()
    assert result["accuracy"] > 0.95
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "task, extra, key",
    [
        ("binary", ["--positive", "7"], "val_accuracy"),
        ("regress", [], "val_mse"),
    ],
)
def test_cli_tasks_binary_and_regress(tmp_path, capsys, task, extra, key):
    import json

    from mlp_xp.cli import main

    assert (
        main(
            [
                *"train --task".split(),
                task,
                *extra,
                *"--epochs 6 --hidden maxout:32:2,16 --activation relu,tanh".split(),
                *"--optimizer adam --lr 0.003 --device cpu --out".split(),
                str(tmp_path / "m.npz"),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    if task == "binary":
        assert result[key] > 0.97  # 7 against the rest; always "no" would score 0.9
    else:
        assert result[key] < 0.5 * 8.25  # half the variance of the digit values 0-9


def test_the_readmes_compose_by_hand_snippet_defines_what_it_uses(tmp_path, monkeypatch):
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("```python", readme.index("The pieces compose by hand"))
    code = readme[start + len("```python") : readme.index("```", start + 3)]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code.replace("epochs=5", "epochs=1"), scope)  # every name it uses is defined
    assert scope["trainer"].history.epoch == [1]
