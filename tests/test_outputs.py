"""Outputs never destroy what is there: an output that is an input, a device, a pipe, a
symbolic link; temp files of killed writers; a full disk; run folders of another run."""

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlp_xp import MLP, load_checkpoint, load_model, save_model
from mlp_xp.cli import finish, main
from mlp_xp.cli import train as train_cli
from mlp_xp.cli.rundir import LOCK
from mlp_xp.errors import OutputError
from mlp_xp.fileio import atomic_write_bytes, check_writable, output_path

from .helpers import StopAt, idx_folder

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX devices, pipes and signals")
TINY = "--hidden 8 --epochs 1 --device cpu --augment none --quiet".split()


def tiny_model(path: Path, seed: int = 1) -> bytes:
    save_model(path, MLP(784, (8,), 10, backend="cpu", seed=seed))
    return path.read_bytes()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------
# item 1: what an output may be
# --------------------------------------------------------------------------


def test_export_onto_its_own_input_is_refused_and_the_model_kept(tmp_path, capsys):
    model = tmp_path / "model.npz"
    before = tiny_model(model)
    assert main(["export", str(model), str(model)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "also an input of this command" in line
    assert model.read_bytes() == before


def test_export_onto_a_link_to_its_input_is_refused(tmp_path, capsys):
    model = tmp_path / "model.npz"
    before = tiny_model(model)
    (tmp_path / "alias.onnx").symlink_to(model)
    assert main(["export", str(model), str(tmp_path / "alias.onnx")]) == 2
    assert "also an input" in one_line(capsys.readouterr().err)
    assert model.read_bytes() == before


def test_train_out_onto_the_checkpoint_it_resumes_is_refused(tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as m:
        _stop_after_one_step(m)
        assert main(["train", *TINY, "--out", str(tmp_path / "m.npz")]) == 130
    ckpt = tmp_path / "m.ckpt.npz"
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(ckpt), "--out", str(ckpt)]) == 2
    assert "also an input" in one_line(capsys.readouterr().err)
    assert ckpt.read_bytes() == before


def test_train_out_onto_one_of_its_data_files_is_refused(tmp_path, capsys):
    data = idx_folder(tmp_path / "d", n=50, gz=False)
    images = data / "train-images-idx3-ubyte"
    before = images.read_bytes()
    assert main(["train", *TINY, "--data", str(data), "--out", str(images)]) == 2
    assert "also an input" in one_line(capsys.readouterr().err)
    assert images.read_bytes() == before


@POSIX
def test_a_device_is_refused_never_replaced_by_a_file(tmp_path, capsys):
    model = tmp_path / "model.npz"
    tiny_model(model)
    assert main(["export", str(model), "/dev/null"]) == 2
    assert "/dev/null: a device" in one_line(capsys.readouterr().err)
    assert main(["train", *TINY, "--out", "/dev/full"]) == 2
    assert "/dev/full: a device" in one_line(capsys.readouterr().err)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISCHR(os.stat("/dev/full").st_mode)
    with pytest.raises(OutputError, match="a device"):
        save_model("/dev/null", MLP(784, (8,), 10, backend="cpu"))


@POSIX
def test_a_named_pipe_stays_a_pipe(tmp_path, capsys):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="not a regular file"):
        save_model(fifo, MLP(784, (8,), 10, backend="cpu"))
    assert main(["train", *TINY, "--out", str(fifo)]) == 2
    assert "not a regular file" in one_line(capsys.readouterr().err)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symbolic_link_is_written_through_to_its_target(tmp_path):
    target = tmp_path / "store" / "real.npz"
    target.parent.mkdir()
    tiny_model(target, seed=1)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    save_model(link, MLP(784, (8,), 10, backend="cpu", seed=2))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert load_model(target, "cpu").params_numpy()["W1"].tolist() == (
        MLP(784, (8,), 10, backend="cpu", seed=2).params_numpy()["W1"].tolist()
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_symlink_loop_and_an_empty_path_are_refused(tmp_path):
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(OutputError, match="leads to itself"):
        atomic_write_bytes(loop, b"x")
    with pytest.raises(OutputError, match="empty output path"):
        output_path("")
    with pytest.raises(OutputError, match="Is a directory"):
        check_writable(tmp_path)


STALLED_SAVER = """
import sys, time
import mlp_xp.fileio as fileio
from mlp_xp import MLP, save_model
def stall(fd):
    print('writing', flush=True)
    time.sleep(60)
fileio.os.fsync = stall
save_model(sys.argv[1], MLP(784, (30,), 10, backend='cpu', seed=2))
"""


@POSIX
def test_the_temp_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    path = tmp_path / "m.npz"
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLED_SAVER, str(path)], stdout=subprocess.PIPE, text=True
    )
    proc.stdout.readline()  # the temp file is written, not yet renamed
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".m.npz.")]
    assert len(left) == 1 and f".{proc.pid}." in left[0].name
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".m.npz.{live.pid}.abcd1234.tmp"  # a writer still at work
        busy.write_bytes(b"x")
        save_model(path, MLP(784, (8,), 10, backend="cpu"))
        assert not left[0].exists() and busy.exists()
    finally:
        live.kill()
        live.wait()


# --------------------------------------------------------------------------
# item 4: nothing lost on the way out
# --------------------------------------------------------------------------


def test_a_run_whose_outputs_do_not_fit_is_refused_before_training(tmp_path, monkeypatch, capsys):
    usage = finish.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(finish.shutil, "disk_usage", lambda p: usage._replace(free=50_000))
    assert main(["train", *TINY, "--out", str(tmp_path / "m.npz")]) == 2
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert "the run will write about" in line and "0.0 MiB free" in line
    assert "epoch" not in captured.out and list(tmp_path.iterdir()) == []


def test_a_final_write_that_fails_saves_the_model_to_a_printed_fallback(
    tmp_path, monkeypatch, capsys
):
    out, spare = tmp_path / "m.npz", tmp_path / "spare"
    spare.mkdir()
    real = train_cli.save_model

    def full_disk(path, model, **meta):
        if Path(path) == out:
            raise OutputError(f"{path}: cannot write it (No space left on device)")
        return real(path, model, **meta)

    monkeypatch.setattr(train_cli, "save_model", full_disk)
    monkeypatch.setattr(finish.tempfile, "gettempdir", lambda: str(spare))
    assert main(["train", *TINY, "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    (private,) = spare.iterdir()  # a new folder of this user's own (no planted link)
    (saved,) = private.iterdir()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # not a name others could plant
    assert "No space left on device" in line and f"saved to {saved} instead" in line
    assert load_model(saved, "cpu").layer_sizes == [784, 8, 10] and not out.exists()


def _stop_after_one_step(monkeypatch):
    real = train_cli._progress_callbacks
    monkeypatch.setattr(
        train_cli, "_progress_callbacks", lambda a, log: [*real(a, log), StopAt(1, 2)]
    )


def test_a_checkpoint_that_cannot_be_written_names_the_step_it_would_have_held(
    tmp_path, monkeypatch, capsys
):
    _stop_after_one_step(monkeypatch)

    def refused(path, trainer, **meta):
        raise OutputError(f"{path}: cannot write it (No space left on device)")

    monkeypatch.setattr(train_cli, "save_checkpoint", refused)
    assert main(["train", *TINY, "--out", str(tmp_path / "m.npz")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "interrupted at epoch 1, step 2, but its checkpoint could not be written" in line
    assert "progress is lost" in line


def test_a_checkpoint_that_does_not_fit_goes_to_a_fallback_it_resumes_from(
    tmp_path, monkeypatch, capsys
):
    _stop_after_one_step(monkeypatch)
    spare, out = tmp_path / "spare", tmp_path / "m.npz"
    spare.mkdir()
    real = train_cli.save_checkpoint

    def full_disk(path, trainer, **meta):
        if spare not in Path(path).parents:
            raise OutputError(f"{path}: cannot write it (No space left on device)")
        return real(path, trainer, **meta)

    monkeypatch.setattr(train_cli, "save_checkpoint", full_disk)
    monkeypatch.setattr(finish.tempfile, "gettempdir", lambda: str(spare))
    assert main(["train", *TINY, "--out", str(out)]) == 130
    (private,) = spare.iterdir()
    (ckpt,) = private.iterdir()
    assert f"checkpoint saved to {ckpt}" in capsys.readouterr().err
    assert load_checkpoint(ckpt, "cpu").state["step"] == 2


# --------------------------------------------------------------------------
# item 5: run folders
# --------------------------------------------------------------------------


def test_a_run_folder_of_another_run_is_refused_unless_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--run-dir", str(run)]) == 0
    (run / "learning_curves.png").write_bytes(b"the old run's picture")
    model = (run / "model.npz").read_bytes()
    capsys.readouterr()
    assert main(["train", *TINY, "--run-dir", str(run), "--seed", "3"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "holds another run" in line and "--overwrite" in line
    assert (run / "model.npz").read_bytes() == model
    assert main(["train", *TINY, "--run-dir", str(run), "--seed", "3", "--overwrite"]) == 0
    assert not (run / "learning_curves.png").exists()
    assert (run / "model.npz").read_bytes() != model
    assert not (run / LOCK).exists()


def test_a_locked_run_folder_is_refused_and_a_dead_runs_lock_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(str(os.getppid()))  # a process that runs
    assert main(["train", *TINY, "--run-dir", str(run)]) == 2
    assert f"another run (process {os.getppid()})" in one_line(capsys.readouterr().err)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run / LOCK).write_text(str(gone.pid))  # a run that was killed
    assert main(["train", *TINY, "--run-dir", str(run)]) == 0
    assert (run / "model.npz").is_file() and not (run / LOCK).exists()


def test_a_finished_resume_removes_its_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _stop_after_one_step(m)
        assert main(["train", *TINY, "--run-dir", str(run)]) == 130
    assert (run / "checkpoint.npz").is_file()
    assert main(["train", "--resume", str(run / "checkpoint.npz"), "--quiet"]) == 0
    assert (run / "model.npz").is_file() and not (run / "checkpoint.npz").exists()


def test_overwrite_keeps_the_old_model_until_the_new_run_succeeds_however_it_is_named(
    tmp_path, monkeypatch
):
    """The model was told apart by its path as written: a folder given absolute and the
    model relative lost the old model as the new run started."""
    from mlp_xp.cli.rundir import claim

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.npz").write_bytes(b"the old model")
    (run / "history.csv").write_text("epoch\n1\n")
    monkeypatch.chdir(tmp_path)
    with claim(run.resolve(), Path("run/model.npz"), None, overwrite=True):
        assert (run / "model.npz").read_bytes() == b"the old model"
        assert not (run / "history.csv").exists()


def test_a_lock_whose_process_id_cannot_be_read_is_not_taken_for_a_dead_one(tmp_path):
    """A lock was created empty and its id written after: a run reading it in between took
    it for a dead run's lock, and two runs shared the folder."""
    from mlp_xp.cli.rundir import claim

    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text("")
    refused = pytest.raises(OutputError, match="another run .* is writing to this run folder")
    with refused, claim(run, run / "model.npz", None, overwrite=False):
        pass
