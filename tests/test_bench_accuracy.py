"""``mlp-xp bench --to-accuracy``: cold runs to a target, the accounting, where a step goes."""

import contextlib
import json

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.cli import main
from mlp_xp.cli.bench_accuracy import _row, summary
from mlp_xp.cli.step_parts import step_parts, step_work, verdict
from mlp_xp.train import TrainConfig, Trainer


def test_to_accuracy_cli_table_verdict_json_and_roofline(tmp_path, capsys):
    plot = tmp_path / "roofline.png"
    argv = ("bench --to-accuracy 0.05 --devices cpu --batch-sizes 512 --seeds 2 "
            "--max-epochs 1 --json --plot").split() + [str(plot)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    (row,) = result["rows"]
    assert row["lr"] == pytest.approx(0.08 * 512 / 128)  # the linear scaling rule, stated
    assert "lr = 0.08 * B / 128" in result["rule"] and result["rule"] in captured.err
    assert [r["seed"] for r in row["runs"]] == [0, 1]
    for run in row["runs"]:  # the parts add up to the whole, within the stated tolerance
        a = run["accounting"]
        parts = run["startup"] + run["data"] + run["training"]
        assert a["parts"] == pytest.approx(parts)
        assert a["unaccounted"] == pytest.approx(run["whole"] - parts)
        assert a["tolerance"] == max(0.02 * run["whole"], 0.05)
        assert a["ok"] and row["accounted"]
        assert run["reached"] and run["epochs"] == 1 and run["val_accuracy"][0] >= 0.05
        assert set(run["startup_parts"]) == {"launch_and_imports", "device_and_model",
                                             "step_choice"}  # fmt: skip
        assert sum(run["startup_parts"].values()) == pytest.approx(run["startup"])
    t = row["time_to_target"]
    assert t["never_reached"] == 0 and t["runs"] == 2
    wholes = sorted(r["whole"] for r in row["runs"])
    assert t["median"] == pytest.approx(sum(wholes) / 2)
    assert (t["low"], t["high"]) == (wholes[0], wholes[1])
    assert set(row["parts"]["seconds"]) == {"gather", "augmentation", "matmuls",
                                            "elementwise", "optimizer"}  # fmt: skip
    assert row["verdict"]["bound"] in {"compute", "memory", "overhead", "launches"}
    env = result["environment"]
    assert env["versions"]["numpy"] == np.__version__ and "blas" in env and "threads" in env
    assert result["summary"] in captured.err and "cpu at batch 512" in result["summary"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(whole, reached=True, seed=0):
    return {"backend": "numpy", "device_name": "cpu", "step": "generic", "seed": seed,
            "recipe": {"lr": 0.08}, "reached": reached, "whole": whole, "epochs": 3,
            "startup": 1.0, "data": 0.1, "training": whole - 1.1,
            "accounting": {"ok": True}}  # fmt: skip


def test_rows_count_runs_that_never_reached_and_the_verdict_says_so():
    parts = {"seconds": {"matmuls": 1.0}, "step_seconds": 1.0}
    fast = _row("cpu", 128, [_run(4.0), _run(5.0), _run(6.0)], 0.9)
    slow = _row("gpu", 128, [_run(9.0), _run(30.0, reached=False), _run(10.0)], 0.9)
    close = _row("gpu", 512, [_run(5.5), _run(6.5), _run(7.0)], 0.9)
    for r, bound in ((fast, "compute"), (slow, "launches"), (close, "launches")):
        r["parts"], r["verdict"] = parts, {"bound": bound}
    assert slow["time_to_target"]["never_reached"] == 1
    assert slow["time_to_target"]["median"] == 10.0  # of 9, 10 and never
    assert slow["parts_median"]["startup"] == 1.0  # parts over the runs that got there
    text = summary({"rows": [fast, slow, close], "target": 0.9, "max_epochs": 60})
    assert text.startswith("On this machine, cpu at batch 128 reaches 90% held-out accuracy "
                           "soonest: 5.00 s (4.00-6.00); the others: gpu at batch 128 "
                           "10.00 s (9.00-not reached), gpu at batch 512 6.50 s "
                           "(5.50-7.00) (overlapping).")  # fmt: skip
    assert ("Device against device: at batch 128 cpu takes 5.00 s (4.00-6.00) and gpu "
            "10.00 s (9.00-not reached).") in text  # fmt: skip
    assert "gpu batch 128: launches" in text and "a device with a faster matmul" in text
    assert "Never reached 90% within 60 epochs: 1 of 3 at gpu batch 128" in text
    never = _row("cpu", 32, [_run(1.0, reached=False)] * 2, 0.99)
    assert summary({"rows": [never], "target": 0.99, "max_epochs": 5}).startswith(
        "No device reached 99%"
    )


def test_step_work_by_hand():
    w = step_work([4, 3, 2], batch=5)
    # products (5,4,3) (5,3,2) forward; (4,5,3) (3,5,2) dE/dW; (5,2,3) dE/dx of layer 2
    assert w["matmuls"]["flops"] == 2 * (60 + 30 + 60 + 30 + 30)
    assert w["matmuls"]["bytes"] == 4 * ((20 + 12 + 15) + (15 + 6 + 10) + (20 + 15 + 12)
                                         + (15 + 10 + 6) + (10 + 6 + 15))  # fmt: skip
    assert w["optimizer"]["bytes"] == 4 * 5 * (12 + 6 + 3 + 2)  # 5 touches a parameter
    assert w["elementwise"]["bytes"] == 4 * (6 * 5 * 5 + 3 * 18)


@pytest.mark.parametrize(
    ("whole", "seconds", "bound"),
    [
        ({"issue_seconds": 1.0, "device_seconds": 1.05}, {"matmuls": 0.9, "optimizer": 0.1},
         "launches"),
        ({"issue_seconds": 0.2, "device_seconds": 1.0}, {"matmuls": 0.9, "optimizer": 0.1},
         "compute"),
        ({"issue_seconds": 1.0}, {"matmuls": 0.1, "optimizer": 0.9}, "memory"),
        ({"issue_seconds": 1.0}, {"matmuls": 0.1, "optimizer": 90.0}, "overhead"),
    ],
)  # fmt: skip
def test_what_bounds_a_step(whole, seconds, bound):
    work = step_work([4, 3, 2], 5)
    parts = {"seconds": seconds, "step_seconds": sum(seconds.values()), "work": work,
             "whole_step": whole}  # fmt: skip
    copy_gbs = work["optimizer"]["bytes"] / 0.9 / 1e9 / 0.6  # at 0.9 s: 60% of the copy rate
    v = verdict(parts, matmul_gflops=1.0, copy_gbs=copy_gbs)
    assert v["bound"] == bound
    assert v["matmul_share"] == pytest.approx(seconds["matmuls"] / sum(seconds.values()))
    assert v["rest_gbs"] == pytest.approx(work["optimizer"]["bytes"] / seconds["optimizer"] / 1e9)
    assert v["elementwise_gbs"] is None  # no elementwise part in these rows


def test_the_measuring_pass_times_each_phase_of_a_small_recipe():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (96, 784), dtype=np.uint8)
    from mlp_xp.data import Normalization

    model = MLP(784, (8,), 10, seed=0)
    config = TrainConfig(batch_size=16, augment="affine", ema=0.0)
    trainer = Trainer(model, X, rng.integers(0, 10, 96), config=config, pixels=Normalization())
    parts = step_parts(trainer, steps=2, warmup=1)
    assert set(parts["seconds"]) == {"gather", "augmentation", "matmuls", "elementwise",
                                     "optimizer"}  # fmt: skip
    assert all(v >= 0 for v in parts["seconds"].values())
    assert parts["step_seconds"] == pytest.approx(sum(parts["seconds"].values()))
    assert parts["whole_step"]["step"] == "generic"
    assert parts["work"] == step_work([784, 8, 10], 16)
    assert trainer.train_state.step == 3  # the whole steps moved the throwaway state on


@pytest.mark.parametrize("batch", [96, 200])
def test_the_measuring_pass_takes_a_batch_of_the_whole_set(batch):
    """A batch of the whole training set is one full step: the pass found no step to time
    and failed with a KeyError after every cold run."""
    rng = np.random.default_rng(0)
    model = MLP(784, (8,), 10, seed=0)
    config = TrainConfig(batch_size=batch, augment="none", ema=0.0)
    with pytest.warns(UserWarning) if batch > 96 else contextlib.nullcontext():
        trainer = Trainer(model, rng.random((96, 784)), rng.integers(0, 10, 96), config=config)
    parts = step_parts(trainer, steps=10, warmup=2)
    assert parts["step_seconds"] > 0 and trainer.train_state.step == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("--to-accuracy 1.5", "target accuracy"),
        ("--to-accuracy 0.9 --ranks 1,2", "--to-accuracy and --ranks are two benchmarks"),
        ("--to-accuracy 0.9 --devices cpu,tpu", "unknown device 'tpu'"),
        ("--to-accuracy 0.9 --devices ,", "--devices must be a comma list"),
        ("--to-accuracy 0.9 --seeds 0", "seeds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["bench", *argv.split()]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_plot_path_that_cannot_be_written_is_refused_before_the_runs(tmp_path, capsys):
    """--plot onto a folder failed only after every cold run."""
    argv = ["bench", "--to-accuracy", "0.9", "--seeds", "1", "--plot", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot write it (Is a directory)" in err and "seed" not in err


def test_the_measuring_pass_runs_on_the_cupy_code_path(request):
    """On the counting CuPy double: the phases, the copy rate and the fast step's whole step."""
    from mlp_xp.backends import get_backend
    from mlp_xp.cli.step_parts import copy_rate

    from .conftest import simulated_gpu

    simulated_gpu(request)
    backend = get_backend("gpu")
    rng = np.random.default_rng(0)
    model = MLP(784, (8,), 10, seed=0, backend=backend)
    config = TrainConfig(batch_size=16, augment="affine", ema=0.0)
    trainer = Trainer(model, rng.random((64, 784), dtype=np.float32), rng.integers(0, 10, 64),
                      config=config)  # fmt: skip
    parts = step_parts(trainer, steps=1, warmup=1)
    assert parts["whole_step"]["step"] == "fast"  # the step the trainer chooses on a GPU
    assert set(parts["seconds"]) >= {"gather", "augmentation", "matmuls", "optimizer"}
    assert copy_rate(backend) > 0
    from mlp_xp.cli.bench_accuracy import _breakdown

    parts = _breakdown(backend, 256, "mnist-5k", steps=1)  # float inputs, for the fast step
    assert parts["whole_step"]["step"] == "fast" and parts["work"] == step_work(
        [784, 300, 100, 10], 256
    )
