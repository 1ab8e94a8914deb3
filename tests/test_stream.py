"""Data larger than a device: uint8 pixels on the device, memory-mapped IDX shards, --stream."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mlp_xp.cli import main
from mlp_xp.data import load_digits, write_idx
from mlp_xp.data.shards import Shards

from .mpi_helpers import assert_same_model, env


def _shards(folder, sizes, seed=0):
    """Several uncompressed IDX shards of random digits; returns all images and labels.

    Each image is dim noise with a bright 4x4 mark in the column its label names, so a
    run learns something (a run at chance is a failed run, exit 2)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    images, labels = [], []
    for i, n in enumerate(sizes):
        img = rng.integers(0, 64, size=(n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n).astype(np.uint8)
        columns = 2 + (2 * lab[:, None] + np.arange(4)[None, :])  # 2..25
        img[np.arange(n)[:, None, None], np.arange(12, 16)[None, :, None], columns[:, None, :]] = (
            255
        )
        write_idx(folder / f"train-{i:02d}-images-idx3-ubyte", img)
        write_idx(folder / f"train-{i:02d}-labels-idx1-ubyte", lab)
        images.append(img)
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def test_shards_are_memory_mapped_and_joined_without_copying(tmp_path):
    images, labels = _shards(tmp_path / "d", [7, 5, 9])
    digits = load_digits(tmp_path / "d", mapped=True)
    assert isinstance(digits.images, Shards)
    assert all(isinstance(p, np.memmap) for p in digits.images.parts)
    rows = np.array([20, 0, 7, 6, 11, 12, 3])
    np.testing.assert_array_equal(digits.images[rows], images.reshape(21, -1)[rows])
    np.testing.assert_array_equal(digits.labels, labels)


def test_shards_read_any_rows_a_bounded_chunk_at_a_time(tmp_path, monkeypatch):
    images, _ = _shards(tmp_path / "d", [40, 3, 25])
    monkeypatch.setattr("mlp_xp.data.shards.READ_ROWS", 4)
    digits = load_digits(tmp_path / "d", mapped=True)
    rows = np.random.default_rng(1).permutation(68)[:50]
    np.testing.assert_array_equal(digits.images[rows], images.reshape(68, -1)[rows])
    np.testing.assert_array_equal(digits.images[10:60], images.reshape(68, -1)[10:60])


def test_streamed_training_equals_training_with_the_set_on_the_device(tmp_path):
    _shards(tmp_path / "d", [300, 250])
    args = ["train", "--data", str(tmp_path / "d"), "--hidden", "16", "--epochs", "2"]
    args += ["--batch-size", "32", "--augment", "shift", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.npz")]) == 0
    assert main([*args, "--stream", "--out", str(tmp_path / "b.npz")]) == 0
    assert_same_model(tmp_path / "a.npz", tmp_path / "b.npz", atol=0)


CAPPED = """
import resource, sys
import numpy.random  # NumPy 2.4 loads it on first use: load it before any limit below
from mlp_xp.cli import main
import mlp_xp.cli.train
{limit}
code = main(sys.argv[1:])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent (pytest)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print("PEAK", int(hwm.split()[1]) * 1024)
sys.exit(code)
"""


def _capped(args, limit=""):
    code = CAPPED.format(limit=limit)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(),  # one BLAS thread, as the suite's other settings may not be
    )


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """100,000 digits: 78 MB of uint8 pixels, 314 MB as float32 -- over the test's cap."""
    folder = tmp_path_factory.mktemp("big")
    _shards(folder, [50_000, 50_000])
    return folder


CAP = 250_000_000  # bytes of peak resident memory allowed to the streamed run


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_set_larger_than_the_memory_cap_trains_streamed_with_bounded_memory(big, tmp_path):
    assert CAP < 100_000 * 784 * 4
    args = ["train", "--data", str(big), "--stream", "--hidden", "16", "--epochs", "1"]
    args += ["--batch-size", "500", "--val-fraction", "0.01", "--quiet"]
    job = _capped([*args, "--out", str(tmp_path / "m.npz")])
    assert job.returncode == 0, job.stderr
    assert "data on the device:" in job.stdout and "streamed" in job.stdout
    peak = int(job.stdout.split("PEAK")[-1])
    assert peak < CAP, f"peak resident memory {peak / 1e6:.0f} MB"
    assert (tmp_path / "m.npz").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_set_that_cannot_fit_is_refused_in_one_line_naming_its_size_and_stream(big, tmp_path):
    # an address-space limit 120 MB above what the process maps once imported: with the
    # 78 MB of files mapped, the 63 MB of uint8 training images cannot also be copied to
    # the device (about 40 MB is left)
    limit = (
        "import os; used = int(open('/proc/self/statm').read().split()[0]) * "
        "os.sysconf('SC_PAGE_SIZE'); resource.setrlimit(resource.RLIMIT_AS, "
        "(used + 120_000_000, resource.RLIM_INFINITY))"
    )
    # on the CPU: probing a GPU (--device auto, with CuPy installed) maps CuPy's libraries
    args = ["train", "--data", str(big), "--device", "cpu", "--hidden", "16", "--epochs", "1"]
    job = _capped([*args, "--quiet", "--out", str(tmp_path / "m.npz")], limit)
    lines = [line for line in job.stderr.splitlines() if "error" in line]
    assert job.returncode == 2, job.stderr
    assert len(lines) == 1 and "MB on the device" in lines[0] and "--stream" in lines[0]
