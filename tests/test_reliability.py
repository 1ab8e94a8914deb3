"""Hostile files, faults and interrupts: the package's own error or a documented recovery."""

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlp_xp import (
    MLP,
    TrainConfig,
    Trainer,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from mlp_xp.backends import device_error_for
from mlp_xp.cli import main
from mlp_xp.data import parse_idx, scale_images, stratified_split, write_idx
from mlp_xp.errors import DataError, DeviceError, ModelFileError

from .helpers import StopAt

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --------------------------------------------------------------------------
# fuzzing the two parsers of untrusted bytes
# --------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_give_an_array_or_a_data_error(raw):
    try:
        arr = parse_idx(raw)
    except DataError:
        return
    assert isinstance(arr, np.ndarray)


@FUZZ
@given(
    code=st.sampled_from([8, 9, 11, 12, 13, 14, 7, 255]),
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=4),
    payload=st.binary(max_size=256),
)
def test_idx_headers_with_random_dims_are_checked_against_the_payload(code, dims, payload):
    raw = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    try:
        arr = parse_idx(raw)
    except DataError:
        return
    assert list(arr.shape) == dims


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.npz"
    save_model(path, MLP(4, (3,), 2, backend="cpu", seed=0))
    return path.read_bytes()


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_as_a_model_file_give_a_model_file_error(tmp_path, raw):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(raw)
    with pytest.raises(ModelFileError):
        load_model(path, "cpu")


@FUZZ
@given(data=st.data())
def test_corrupted_model_files_load_identically_or_are_refused(tmp_path, model_bytes, data):
    raw = bytearray(model_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(raw))
    try:
        model = load_model(path, "cpu")
    except ModelFileError:
        return
    (tmp_path / "orig.npz").write_bytes(model_bytes)
    original = load_model(tmp_path / "orig.npz", "cpu")
    for k, v in original.params_numpy().items():
        np.testing.assert_array_equal(model.params_numpy()[k], v)


# --------------------------------------------------------------------------
# model files that try to run code
# --------------------------------------------------------------------------


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_npz_with_a_pickle_payload_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(str(marker))
    np.savez(tmp_path / "evil.npz", meta=np.frombuffer(b"{}", np.uint8), evil=evil)
    with pytest.raises(ModelFileError, match="pickled/object data"):
        load_model(tmp_path / "evil.npz", "cpu")
    assert not marker.exists()


def test_a_bare_pickle_named_npz_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.npz").write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "evil.npz", "cpu")
    assert not marker.exists()
    assert main(["predict", str(tmp_path / "evil.npz"), "x.npy"]) == 2
    assert not marker.exists()


def test_a_bare_npy_array_is_not_a_model(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    os.replace(tmp_path / "a.npy", tmp_path / "a.npz")
    with pytest.raises(ModelFileError, match="not an mlp_xp model file"):
        load_model(tmp_path / "a.npz", "cpu")


def test_a_foreign_npz_is_not_a_model(tmp_path):
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    with pytest.raises(ModelFileError, match="no metadata"):
        load_model(tmp_path / "foreign.npz", "cpu")


# --------------------------------------------------------------------------
# nothing half-written
# --------------------------------------------------------------------------

SAVER = """
import sys, itertools
from mlp_xp import MLP, save_model
models = [MLP(784, (300, 100), 10, backend='cpu', seed=s) for s in (1, 2)]
save_model(sys.argv[1], models[0])
print('ready', flush=True)
for i in itertools.count():
    save_model(sys.argv[1], models[i % 2])
"""

STALLED_SAVER = """
import sys, time
import mlp_xp.fileio as fileio
from mlp_xp import MLP, save_model
save_model(sys.argv[1], MLP(784, (30,), 10, backend='cpu', seed=1))
def stall(fd):
    print('writing', flush=True)
    time.sleep(60)
fileio.os.fsync = stall
save_model(sys.argv[1], MLP(784, (30,), 10, backend='cpu', seed=2))
"""


def _start(code, path):
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    proc.stdout.readline()
    return proc


POSIX_SIGNALS = pytest.mark.skipif(
    sys.platform == "win32", reason="sends POSIX signals (kill -9, SIGINT) to a child process"
)


@POSIX_SIGNALS
@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_kill_9_during_repeated_saves_leaves_a_loadable_file(tmp_path, delay):
    path = tmp_path / "m.npz"
    proc = _start(SAVER, path)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    model = load_model(path, "cpu")
    assert model.layer_sizes == [784, 300, 100, 10]


@POSIX_SIGNALS
def test_kill_9_mid_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.npz"
    proc = _start(STALLED_SAVER, path)  # returns once the new bytes are written, unrenamed
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    expected = MLP(784, (30,), 10, backend="cpu", seed=1).params_numpy()
    got = load_model(path, "cpu").params_numpy()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


# --------------------------------------------------------------------------
# interrupt and resume
# --------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_interrupted_and_resumed_run_ends_with_the_same_parameters(tmp_path, digits, optimizer):
    train, val = stratified_split(digits.labels, 0.2, seed=0)
    X = scale_images(digits.images)
    cfg = TrainConfig(
        epochs=3,
        batch_size=64,
        optimizer=optimizer,
        lr=0.05 if optimizer == "momentum" else 1e-3,
        seed=3,
        schedule="cosine",
    )
    args = (X[train][:1000], digits.labels[train][:1000], X[val][:200], digits.labels[val][:200])

    full = MLP(784, (64, 32), 10, backend="cpu", seed=3, l2=1e-4)
    expected = Trainer(full, *args, config=cfg).run().as_dict()

    part = MLP(784, (64, 32), 10, backend="cpu", seed=3, l2=1e-4)
    trainer = Trainer(part, *args, config=cfg, callbacks=[StopAt(2, 5)])
    assert trainer.run().interrupted and (trainer.epoch, trainer.step) == (1, 5)
    save_checkpoint(tmp_path / "c.npz", trainer)

    ckpt = load_checkpoint(tmp_path / "c.npz", "cpu")
    assert ckpt.config == cfg
    resumed = Trainer(ckpt.model, *args, config=ckpt.config)
    resumed.restore(ckpt.optimizer, ckpt.state)
    history = resumed.run()
    assert history.epoch == [1, 2, 3] and not history.interrupted
    for k, v in full.params_numpy().items():
        np.testing.assert_allclose(ckpt.model.params_numpy()[k], v, rtol=1e-5, atol=1e-7, err_msg=k)
    got = history.as_dict()  # the interrupted epoch's loss is over all its steps, both parts
    for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, err_msg=key)
    assert got["seconds"][1] >= 0.9 * ckpt.state["partial_epoch"]["seconds"]  # both parts timed


def test_a_resumed_run_with_early_stopping_keeps_the_best_epoch_seen_before_the_interrupt(
    tmp_path, digits
):
    train, val = stratified_split(digits.labels, 0.2, seed=0)
    X = scale_images(digits.images)
    # a rate so high that the held-out accuracy jumps about: its best is epoch 3 of 7
    cfg = TrainConfig(epochs=12, batch_size=64, lr=0.5, seed=1, patience=4, schedule="constant",
                      augment="affine", ema=0.0)  # fmt: skip
    train, val = train[::6], val[::5]  # every class
    args = (X[train], digits.labels[train], X[val], digits.labels[val])

    full = MLP(784, (32,), 10, backend="cpu", seed=3, l2=1e-4)
    history = Trainer(full, *args, config=cfg).run()
    best, stop = history.best_epoch, 4  # interrupted in epoch 5, after the best
    assert best <= stop and max(history.val_accuracy[stop:]) < history.val_accuracy[best - 1]

    part = MLP(784, (32,), 10, backend="cpu", seed=3, l2=1e-4)
    trainer = Trainer(part, *args, config=cfg, callbacks=[StopAt(stop + 1, 2)])
    assert trainer.run().interrupted
    save_checkpoint(tmp_path / "c.npz", trainer)
    ckpt = load_checkpoint(tmp_path / "c.npz", "cpu")
    resumed = Trainer(ckpt.model, *args, config=ckpt.config)
    resumed.restore(ckpt.optimizer, ckpt.state)
    assert resumed.run().best_epoch == best
    for k, v in full.params_numpy().items():  # the best epoch's weights, not the last one's
        np.testing.assert_array_equal(ckpt.model.params_numpy()[k], v, err_msg=k)


@POSIX_SIGNALS
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_writes_a_checkpoint_exits_130_and_resume_finishes(tmp_path, sig):
    common = "--epochs 2 --batch-size 1 --lr 0.002 --hidden 16 --device cpu --augment none"
    common = [*common.split(), "--seed", "5"]
    out = tmp_path / "m.npz"
    proc = subprocess.Popen(
        [
            sys.executable,
            *"-m mlp_xp train".split(),
            *common,
            "--out",
            str(out),
            "--run-dir",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("network"):
            break
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    ckpt = tmp_path / "run" / "checkpoint.npz"
    assert "checkpoint saved" in err and ckpt.exists() and not out.exists()
    assert (
        main(
            [
                *"train --resume".split(),
                str(ckpt),
                "--out",
                str(out),
                *"--device cpu --quiet".split(),
            ]
        )
        == 0
    )
    resumed = load_model(out, "cpu").params_numpy()
    assert main(["train", *common, "--out", str(tmp_path / "ref.npz"), "--quiet"]) == 0
    reference = load_model(tmp_path / "ref.npz", "cpu").params_numpy()
    for k in reference:
        np.testing.assert_allclose(resumed[k], reference[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_resume_from_a_plain_model_is_refused(tmp_path, capsys):
    save_model(tmp_path / "m.npz", MLP(784, (4,), 10, backend="cpu"))
    assert (
        main(["train", "--resume", str(tmp_path / "m.npz"), "--out", str(tmp_path / "o.npz")]) == 2
    )
    assert "not a resumable checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------
# divergence, GPU faults, feature mismatch
# --------------------------------------------------------------------------


def test_divergence_in_the_cli_saves_the_last_good_parameters(tmp_path, capsys):
    out = tmp_path / "m.npz"
    code = main(
        [
            *"train --lr 1e30 --optimizer sgd --epochs 3 --hidden 16 --device cpu --out".split(),
            str(out),
            *"--augment none".split(),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "diverged" in err and "epoch 1, step" in err
    assert "lower learning rate" in err and len(err.strip().splitlines()) == 1
    params = load_model(out, "cpu").params_numpy()
    assert all(np.all(np.isfinite(v)) for v in params.values())


def test_cupy_out_of_memory_becomes_a_clear_device_error():
    OutOfMemoryError = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})
    error = device_error_for(OutOfMemoryError("Out of memory allocating 4,000,000,000 bytes"))
    assert isinstance(error, DeviceError)
    assert "ran out of memory" in str(error) and "--batch-size" in str(error)
    assert device_error_for(ValueError("x")) is None


@pytest.mark.parametrize("shape", [(2, 100), (10, 10), (3, 10, 10), (2, 28, 27)])
def test_predict_with_the_wrong_image_size_names_the_file_exit_2(tmp_path, capsys, shape):
    save_model(tmp_path / "m.npz", MLP(784, (4,), 10, backend="cpu"))
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert f"x.npy: expected images of shape (N, 28, 28) or (N, 784), got {shape}" in err


def test_training_on_images_of_another_size_names_the_folder_exit_2(tmp_path, capsys):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((40, 10, 10), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(40, dtype=np.uint8) % 10)
    out = tmp_path / "m.npz"
    assert main(["train", "--data", str(tmp_path), "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "images are 10x10 pixels; the network takes 28x28" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_predict_with_object_npy_is_refused(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    save_model(tmp_path / "m.npz", MLP(784, (4,), 10, backend="cpu"))
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npy")]) == 2
    assert "pickled/object data" in capsys.readouterr().err


def test_atomic_writes_keep_normal_permissions(tmp_path):
    path = save_model(tmp_path / "m.npz", MLP(4, (3,), 2, backend="cpu"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o640)
    save_model(path, MLP(4, (3,), 2, backend="cpu"))
    assert path.stat().st_mode & 0o777 == 0o640
