"""Flags that say nothing or mislead are refused in one line; --json errors are JSON; the
plots name what each task measures."""

import json
import sys

import numpy as np
import pytest

from mlp_xp.calibration import Reliability
from mlp_xp.cli import bench as bench_cli
from mlp_xp.cli import main, plots

TINY = "--hidden 8 --epochs 2 --device cpu --augment none --quiet".split()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "argv, said",
    [
        (["train", *TINY, "--warmup", "100"], "--warmup 100 epochs is longer than the run"),
        (["train", *TINY, "--watchdog", "5"], "--watchdog applies to --distributed runs only"),
        (["train", *TINY, "--out", ""], "--out is empty: give a path"),
        (["train", *TINY, "--run-dir", " "], "--run-dir is empty: give a path"),
        (["train", *TINY, "--l2", "1e10"], "--l2 1e+10 with --lr 0.08: the weight penalty alone"),
        (["perceptron", "--digits", "0,1", "--toy", "and"], "name two different data sets"),
    ],
)
def test_flags_that_say_nothing_together_are_refused_in_one_line(
    argv, said, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert said in one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_bench_plot_without_matplotlib_fails_before_the_benchmark(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails

    def never(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(bench_cli, "run_bench", never)
    assert main(["bench", "--plot", str(tmp_path / "b.png")]) == 2
    assert "plots need matplotlib: pip install" in one_line(capsys.readouterr().err)


def test_with_json_an_error_is_a_json_object_on_stdout(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.npz"), "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out.strip().splitlines()[-1])
    assert error == {
        "error": f"{tmp_path / 'none.npz'}: no such model file",
        "command": "evaluate",
        "exit_status": 2,
    }
    assert one_line(captured.err).endswith("no such model file")


def test_a_folder_given_as_a_model_is_called_a_folder(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a folder, not a model file" in one_line(capsys.readouterr().err)


def test_bench_out_of_memory_names_the_bench_flags(monkeypatch, capsys):
    def huge(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(bench_cli, "run_bench", huge)
    assert main(["bench", "--samples", "100000000000"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "fewer --samples" in line and "--batch-size " not in line


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, instead of PNG files."""
    pytest.importorskip("matplotlib")
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    return drawn


@pytest.mark.parametrize(
    "task, loss, score",
    [
        ("classify", "cross-entropy + L2", "held-out accuracy (%)"),
        ("binary", "binary cross-entropy + L2", "held-out accuracy (%)"),
        ("regress", "squared error / 2 + L2", "held-out MSE"),
    ],
)
def test_learning_curves_name_each_tasks_loss_and_score(figures, task, loss, score):
    history = {"epoch": [1, 2], "train_loss": [3.0, 1.0], "val_loss": [2.0, 1.5]}
    history["val_mse" if task == "regress" else "val_accuracy"] = [0.5, 0.7]
    plots.learning_curves(history, "x.png", task=task)
    left, right = figures[0].axes
    assert left.get_ylabel() == loss and right.get_ylabel() == score
    assert right.lines and len(right.lines[0].get_xdata()) == 2  # not an empty panel


def test_the_reliability_diagram_shows_each_bins_count(figures):
    counts = np.array([0, 12, 0, 988.0])
    curve = Reliability(counts, np.array([0, 0.5, 0, 0.97]), np.array([0, 0.4, 0, 0.96]))
    plots.reliability_diagram({"temperature 1": curve}, "r.png")
    texts = [t.get_text() for t in figures[0].axes[0].texts]
    assert texts == ["12", "988"]


def test_the_gpu_running_out_of_memory_is_called_that_not_host_memory(monkeypatch, capsys):
    """CuPy's OutOfMemoryError is a MemoryError: it was reported as "out of host memory;
    try a smaller --batch-size"."""
    from mlp_xp.cli import commands

    gpu_oom = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})

    def train(args):
        raise gpu_oom("Out of memory allocating 1,048,576 bytes (allocated so far: 0 bytes).")

    monkeypatch.setitem(commands.COMMANDS, "train", train)
    assert main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "the GPU ran out of memory (Out of memory allocating 1,048,576 bytes" in err
    assert "host memory" not in err
