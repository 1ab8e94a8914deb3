"""``train --resume``: flags that would change the run are refused naming the checkpoint's
value, ``--epochs N`` extends it with the schedule stretched, and it writes where the
original run wrote."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlp_xp import MLP, TrainConfig, Trainer, load_checkpoint, load_model, save_checkpoint
from mlp_xp.cli import main
from mlp_xp.cli import train as train_cli
from mlp_xp.cli.parser import build_parser
from mlp_xp.cli.resume import HONOURED, fixed_settings
from mlp_xp.data import scale_images
from mlp_xp.errors import ConfigError
from mlp_xp.train.schedules import Plan, make_schedule, stretch

from .helpers import StopAt, idx_folder

RUN = (
    "--hidden 16 --epochs 3 --batch-size 128 --lr 0.05 --schedule cosine --augment none --seed 5 "
    "--device cpu --quiet"
)


def interrupt(monkeypatch, args, at=(2, 3)):
    """``mlp-xp train ARGS`` stopped after step ``at[1]`` of epoch ``at[0]``, as Ctrl-C
    stops it: the command writes its checkpoint and exits 130."""
    real = train_cli._progress_callbacks
    with monkeypatch.context() as m:
        m.setattr(train_cli, "_progress_callbacks", lambda a, log: [*real(a, log), StopAt(*at)])
        assert main(["train", *args]) == 130


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        interrupt(monkeypatch, [*RUN.split(), "--run-dir", str(folder)])
    assert not (folder / "model.npz").exists()
    return folder


@pytest.fixture
def run_dir(interrupted_run, tmp_path):
    """A run folder of its own holding the checkpoint of an interrupted 3-epoch run."""
    return Path(shutil.copytree(interrupted_run, tmp_path / "run"))


def resume(ckpt, *flags, capsys=None):
    code = main(["train", "--resume", str(ckpt), "--quiet", *map(str, flags)])
    return code, (capsys.readouterr() if capsys else None)


# --------------------------------------------------------------------------
# refused: flags that change the network, the data, the optimizer or the recipe
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, named",
    [
        ("--hidden 50", "--hidden 50 (it has 16)"),
        ("--activation tanh", "--activation tanh (it has relu)"),
        ("--l2 0.01", "--l2 0.01 (it has 0.0001)"),
        ("--dtype float64", "--dtype float64 (it has float32)"),
        (
            "--task binary --positive 3",
            "--task binary (it has classify), --positive 3 (it has none)",
        ),
        ("--val-fraction 0.3", "--val-fraction 0.3 (it has 0.2)"),
        ("--optimizer adam", "--optimizer adam (it has momentum)"),
        ("--momentum 0.5", "--momentum 0.5 (it has 0.9)"),
        ("--lr 0.1", "--lr 0.1 (it has 0.05)"),
        ("--schedule step", "--schedule step (it has cosine)"),
        ("--warmup 1", "--warmup 1.0 (it has 0.0)"),
        ("--augment shift", "--augment shift (it has none)"),
        ("--dropout 0.2", "--dropout 0.2 (it has 0.0)"),
        ("--patience 2", "--patience 2 (it has 0)"),
        ("--batch-size 64", "--batch-size 64 (it has 128)"),
        ("--seed 6", "--seed 6 (it has 5)"),
        ("--epochs 2", "--epochs 2 (it has 3; runs extend, never shrink)"),
        ("--hidden 50 --epochs 101", "--hidden 50 (it has 16) would change it"),
    ],
)
def test_flags_that_would_change_the_run_are_refused_naming_the_checkpoints_value(
    run_dir, capsys, flags, named
):
    before = (run_dir / "checkpoint.npz").read_bytes()
    code, (_, err) = resume(run_dir / "checkpoint.npz", *flags.split(), capsys=capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("mlp-xp train: error: --resume continues the run the checkpoint holds: ")
    assert named in err and "start a new run without --resume" in err
    assert (run_dir / "checkpoint.npz").read_bytes() == before
    assert not (run_dir / "model.npz").exists()


def test_another_data_folder_is_refused_naming_the_checkpoints(tmp_path, monkeypatch, capsys):
    data = idx_folder(tmp_path / "digits", n=200)
    interrupt(
        monkeypatch, [*RUN.split(), "--data", str(data), "--out", str(tmp_path / "m.npz")], (2, 1)
    )
    other = idx_folder(tmp_path / "other", n=200, seed=1)
    code, (_, err) = resume(tmp_path / "m.ckpt.npz", "--data", other, capsys=capsys)
    assert code == 2 and f"--data {other} (it has {data.resolve()})" in err


def test_the_checkpoints_own_values_typed_again_change_nothing(run_dir, capsys):
    # the original command line with --resume added: every flag equals the checkpoint's
    code, _ = resume(
        run_dir / "checkpoint.npz",
        *RUN.split(),
        "--hidden",
        " 16",
        "--activation",
        "relu",
        "--lr",
        "5e-2",
        "--momentum",
        "0.9",
        "--data",
        "mnist-5k",
        "--optimizer",
        "momentum",
        "--augment",
        "auto",  # the default, typed: it chose the checkpoint's augmentation for this data
    )
    assert code == 0
    model = load_model(run_dir / "model.npz", "cpu")
    assert model.meta["training"]["config"]["epochs"] == 3


def test_every_train_flag_is_honoured_fixed_or_extends(run_dir):
    dests = set(vars(build_parser().parse_args(["train"]))) - {"command", "given"}
    ckpt = load_checkpoint(run_dir / "checkpoint.npz", "cpu")
    fixed = set(fixed_settings(ckpt, ckpt.model.meta["data"]))
    assert dests == HONOURED | fixed | {"epochs"}
    assert not HONOURED & fixed


# --------------------------------------------------------------------------
# --epochs N: the run is extended, its schedule stretched
# --------------------------------------------------------------------------


def test_more_epochs_extend_the_run_and_stretch_its_schedule(run_dir, capsys):
    code, (out, _) = resume(run_dir / "checkpoint.npz", "--epochs", 5, capsys=capsys)
    assert code == 0
    assert "resumed from" in out and "at epoch 2, step 3" in out
    assert (
        "extending the run from 3 to 5 epochs: the rest of its cosine schedule is stretched "
        "to end at epoch 5, so the learning rate goes on from "
    ) in out
    history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))["history"]
    assert history["epoch"] == [1, 2, 3, 4, 5]
    lr = history["lr"]  # the rate of each epoch's last step
    assert lr[0] > lr[1] > lr[2] > lr[3] > lr[4] >= 0
    # epoch 1 ran on the original plan; epoch 2 is already on the stretched one
    spe = 32  # 4000 training digits in batches of 128
    original = make_schedule("cosine", 3 * spe)
    assert lr[0] == pytest.approx(0.05 * original(spe - 1))
    assert lr[1] > 0.05 * original(2 * spe - 1)  # slower decay than the 3-epoch plan
    assert lr[4] < 0.05 * 0.001  # and it still anneals to (nearly) zero at the new end
    config = load_model(run_dir / "model.npz", "cpu").meta["training"]["config"]
    assert config["epochs"] == 5


def test_an_extended_run_interrupted_again_resumes_on_the_same_stretched_plan(
    tmp_path, monkeypatch
):
    runs = {}
    for name in ("straight", "twice"):
        folder = tmp_path / name
        interrupt(monkeypatch, [*RUN.split(), "--run-dir", str(folder)])
        if name == "twice":  # extended, then interrupted again inside the added epochs
            with monkeypatch.context() as m:
                m.setattr(train_cli, "_progress_callbacks", lambda a, log: [StopAt(4, 7)])
                assert resume(folder / "checkpoint.npz", "--epochs", 5)[0] == 130
            state = load_checkpoint(folder / "checkpoint.npz", "cpu").state
            assert state["schedule_stretches"] == [[32 + 3, 96, 160]]
            assert state["config"]["epochs"] == 5
        assert resume(folder / "checkpoint.npz", "--epochs", 5)[0] == 0
        runs[name] = load_model(folder / "model.npz", "cpu").params_numpy()
    for k, v in runs["straight"].items():
        np.testing.assert_allclose(runs["twice"][k], v, rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("name", ["constant", "step", "cosine", "onecycle"])
def test_a_stretched_schedule_goes_on_without_a_jump_and_ends_where_it_would_have(name):
    old, new, start = 100, 250, 37
    factor = make_schedule(name, old, warmup_steps=10)
    longer = stretch(factor, start, old, new)
    assert [longer(s) for s in range(start + 1)] == [factor(s) for s in range(start + 1)]
    assert longer(new - 1) == pytest.approx(factor(old - 1), abs=0.02)
    assert longer(start + (new - start) / 2) == pytest.approx(factor(start + (old - start) / 2))


def test_a_plan_refuses_to_stretch_a_finished_run_or_a_mismatched_checkpoint():
    plan = Plan("cosine", 10)
    plan.extend(4, 20)
    assert plan.stretches == [[4, 10, 20]] and plan.total == 20
    with pytest.raises(ConfigError, match="finished its schedule"):
        plan.extend(20, 30)
    with pytest.raises(ConfigError, match="planned for 20 steps, this one has 24"):
        Plan("cosine", 24, stretches=plan.stretches)


# --------------------------------------------------------------------------
# where a resumed run writes
# --------------------------------------------------------------------------


def test_a_resumed_run_writes_to_the_original_run_folder_not_the_current_one(
    run_dir, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = tmp_path / "moved run"
    run_dir.rename(moved)  # the record is relative to the checkpoint: moving the folder is fine
    assert resume(moved / "checkpoint.npz")[0] == 0
    assert list(elsewhere.iterdir()) == []
    assert load_model(moved / "model.npz", "cpu").layer_sizes == [784, 16, 10]
    rows = (moved / "history.csv").read_text(encoding="utf-8").splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_without_a_run_dir_the_model_goes_back_to_its_original_out(tmp_path, monkeypatch):
    out = tmp_path / "models" / "digits.npz"
    interrupt(monkeypatch, [*RUN.split(), "--out", str(out)])
    monkeypatch.chdir(tmp_path)
    assert resume(out.with_suffix(".ckpt.npz"))[0] == 0
    assert out.is_file() and not (tmp_path / "model.npz").exists()


def test_typed_out_and_run_dir_are_honoured(run_dir, tmp_path):
    assert resume(run_dir / "checkpoint.npz", "--run-dir", tmp_path / "new")[0] == 0
    assert (tmp_path / "new" / "model.npz").is_file() and (
        tmp_path / "new" / "history.csv"
    ).is_file()
    assert not (run_dir / "model.npz").exists()


def test_a_checkpoint_written_from_python_is_refused_in_one_line(tmp_path, capsys, digits):
    config = TrainConfig(epochs=2, batch_size=32, augment="none")
    X, y = scale_images(digits.images[:64]), digits.labels[:64]
    trainer = Trainer(MLP(784, (8,), 10, backend="cpu"), X, y, config=config)
    trainer.callbacks.append(StopAt(1, 1))
    trainer.run()
    save_checkpoint(tmp_path / "api.npz", trainer)
    code, (_, err) = resume(tmp_path / "api.npz", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "does not record its data (it was not written by mlp-xp train)" in err
