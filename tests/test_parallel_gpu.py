"""GPU ranks under a real ``mpiexec``: NCCL sums the gradients on the device.

On the counting CuPy double (every machine): each rank of ``train --distributed --device
gpu`` drives the GPU of its local rank, sums its gradients with one NCCL allreduce per
step on the flat buffer's device pointer, with no host sync and no host copy in a step,
and ends with the parameters of one process. On real GPUs (``gpu`` marker): the same
command with NCCL itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlp_xp.backends import gpu_probe
from mlp_xp.cli import main

from . import gpu_rank
from . import mpi_helpers as mpi
from .conftest import require_gpu
from .cupy_double import installed
from .test_stream import _shards

pytestmark = pytest.mark.mpi

RECIPE = ["--hidden", "64", "--epochs", "2", "--seed", "3", "--quiet", "--val-fraction", "0.5"]
ARGS = [*RECIPE, "--batch-size", "100", "--augment", "affine", "--dropout", "0.2"]
N_PARAMS = 784 * 64 + 64 + 64 * 10 + 10


def _single(tmp_path, args, device="gpu"):
    out = tmp_path / "one.npz"
    with installed():
        assert main(["train", "--device", device, *args, "--out", str(out)]) == 0
    return out


def _ranks(tmp_path, n):
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(n)]


def test_gpu_ranks_allreduce_with_nccl_once_per_step_without_syncs_and_match_one_process(
    tmp_path,
):
    out = tmp_path / "n.npz"
    args = ["train", "--distributed", "--device", "gpu", *ARGS, "--out", str(out)]
    job = mpi.run(2, args, prelude=gpu_rank.prelude(tmp_path))
    assert job.returncode == 0, job.stderr
    assert "device: cupy on gpu:0" in job.stderr + job.stdout
    mpi.assert_same_model(out, _single(tmp_path, ARGS))

    steps_per_epoch = 2500 // 100
    for r, rank in enumerate(_ranks(tmp_path, 2)):
        [comm] = rank["communicators"]
        assert (comm["device"], comm["rank"], comm["size"]) == (r, r, 2)  # gpu:<local rank>
        names = [name for name, _, _ in comm["calls"]]
        assert names == ["bcast"] + ["allReduce"] * (2 * steps_per_epoch)
        assert all(count == N_PARAMS for _, count, _ in comm["calls"])  # the one flat buffer
        assert len(rank["steps"]) == 2 * steps_per_epoch
        for step in rank["steps"]:
            assert step["collectives"] == 1, step
            assert (step["syncs"], step["d2h"]) == (0, 0), step
        # nothing is copied to the device in a step, but the augmentation's constants (the
        # basis, the coordinate limits, the image offsets: 4 copies) in the run's first
        assert [step["h2d"] for step in rank["steps"]] == [4] + [0] * (2 * steps_per_epoch - 1)
        assert rank["contexts"] == [r]  # each rank touched its own GPU only


def test_an_uneven_global_batch_over_three_gpu_ranks_matches_one_process(tmp_path):
    args = [*RECIPE, "--batch-size", "50", "--augment", "elastic"]  # 17, 17, 16 rows a step
    out = tmp_path / "n.npz"
    job = mpi.run(
        3,
        ["train", "--distributed", "--device", "gpu", *args, "--out", str(out)],
        prelude=gpu_rank.prelude(tmp_path, devices=3),
    )
    assert job.returncode == 0, job.stderr
    mpi.assert_same_model(out, _single(tmp_path, args))
    devices = [rank["communicators"][0]["device"] for rank in _ranks(tmp_path, 3)]
    assert devices == [0, 1, 2]


def test_streamed_gpu_ranks_send_one_batch_a_step_and_match_the_set_on_the_device(tmp_path):
    _shards(tmp_path / "d", [300, 250])
    args = ["--data", str(tmp_path / "d"), "--hidden", "16", "--epochs", "2", "--quiet"]
    args += ["--batch-size", "32", "--augment", "shift"]
    out = tmp_path / "n.npz"
    job = mpi.run(
        2,
        ["train", "--distributed", "--device", "gpu", "--stream", *args, "--out", str(out)],
        prelude=gpu_rank.prelude(tmp_path),
    )
    assert job.returncode == 0, job.stderr
    mpi.assert_same_model(out, _single(tmp_path, args))
    for rank in _ranks(tmp_path, 2):
        steps = rank["steps"]
        assert all((s["collectives"], s["syncs"], s["d2h"]) == (1, 0, 0) for s in steps), steps
        # one copy a step: its rows of the batch; the augmentation's 4 constants are sent
        # with the first batch of each size (440 = 13 * 32 + 24: the last is shorter)
        assert [s["h2d"] for s in steps] == [5] + [1] * 12 + [5] + [1] * 14


@pytest.mark.parametrize("visible, local_rank, expected", [(2, 1, "gpu:1"), (1, 3, "gpu:0")])
def test_each_rank_takes_the_gpu_of_its_local_rank_among_those_it_sees(
    visible, local_rank, expected
):
    """One rank per GPU of a machine; where a scheduler shows each rank only its own GPU
    (CUDA_VISIBLE_DEVICES per rank), that one is gpu:0 for every rank."""
    from types import SimpleNamespace

    from mlp_xp.parallel.launch import device_for

    world = SimpleNamespace(local_rank=local_rank)
    with installed(devices=visible):
        for spec in ("gpu", "auto", None, "cuda", "GPU"):  # None: --device left out
            assert device_for(spec, world) == expected, spec
        assert device_for("gpu:1", world) == "gpu:1"  # as given
    assert device_for("cpu", world) == "cpu"


def _one_error_line(job) -> str:
    lines = [line for line in job.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlp-xp train: error: "), job.stderr
    return lines[0]


def test_two_ranks_on_one_gpu_are_refused_in_one_line(tmp_path):
    args = ["train", "--distributed", "--device", "gpu:0", *RECIPE, "--out", str(tmp_path / "n")]
    job = mpi.run(2, args, prelude=gpu_rank.prelude(tmp_path))
    assert job.returncode == 2
    line = _one_error_line(job)
    assert "ranks 0 and 1 both use gpu:0 (0000:18:00.0)" in line and "one GPU per rank" in line
    assert not (tmp_path / "n").exists()


def test_a_job_of_gpu_and_cpu_ranks_is_refused_in_one_line(tmp_path):
    """--device auto where only rank 0 sees a GPU: refused at start-up, not left waiting
    (rank 0 would join NCCL while rank 1 waited in MPI)."""
    args = ["train", "--distributed", "--device", "auto", *RECIPE, "--out", str(tmp_path / "n")]
    job = mpi.run(2, args, prelude=gpu_rank.prelude(tmp_path, only=(0,)), limit=60)
    assert job.returncode == 2
    line = _one_error_line(job)
    assert "device kind is 'gpu' on rank 0 but 'cpu' on rank 1" in line
    assert not (tmp_path / "n").exists()


def test_gpu_ranks_without_the_nccl_library_are_one_line_naming_the_extra(tmp_path):
    args = ["train", "--distributed", "--device", "gpu", *RECIPE, "--out", str(tmp_path / "n")]
    job = mpi.run(2, args, prelude=gpu_rank.prelude(tmp_path, ("nccl",)))
    assert job.returncode == 2
    line = _one_error_line(job)
    assert "which CuPy cannot load on rank 0" in line and 'pip install ".[nccl]"' in line
    assert not (tmp_path / "n").exists()


@pytest.mark.gpu
def test_real_gpu_ranks_with_nccl_match_one_process(tmp_path, request):
    """One rank per visible GPU (one rank on a one-GPU machine still runs NCCL)."""
    probe = gpu_probe()
    if not probe.ok:
        message = f"no usable GPU: {probe.reason}"
        if require_gpu(request.config):
            pytest.fail(message + " (GPU required by --require-gpu/MLP_XP_REQUIRE_GPU)")
        pytest.skip(message)
    import cupy
    from cupy.cuda import nccl

    if not nccl.available:
        message = "CuPy cannot load NCCL (pip install nvidia-nccl-cu12 or -cu13)"
        if require_gpu(request.config):
            pytest.fail(message + " (GPU required by --require-gpu/MLP_XP_REQUIRE_GPU)")
        pytest.skip(message)
    ranks = min(cupy.cuda.runtime.getDeviceCount(), 4)
    out, one = tmp_path / "n.npz", tmp_path / "one.npz"
    args = ["train", "--distributed", "--device", "gpu", *ARGS, "--out", str(out)]
    job = mpi.run(ranks, args, prelude=_contexts_prelude(tmp_path))
    assert job.returncode == 0, job.stderr
    assert main(["train", "--device", "gpu", *ARGS, "--out", str(one)]) == 0
    mpi.assert_same_model(out, one)
    with np.load(out) as z:
        assert z["param/0/W"].dtype == np.float32
    for r in range(ranks):  # the twin of the double's contexts: rank r on gpu:r only
        assert json.loads((tmp_path / f"contexts{r}.json").read_text()) == [r]


def _contexts_prelude(out) -> str:
    """Lines that make a real GPU rank write, at exit, the devices on which it has an
    active primary context (the CUDA driver's ``cuDevicePrimaryCtxGetState``)."""
    return f"""
import atexit, ctypes, json
from mpi4py import MPI
_rank = MPI.COMM_WORLD.Get_rank()
def _contexts():
    cuda = ctypes.CDLL("libcuda.so.1")
    cuda.cuInit(0)
    n = ctypes.c_int()
    cuda.cuDeviceGetCount(ctypes.byref(n))
    active = []
    for d in range(n.value):
        dev, flags, on = ctypes.c_int(), ctypes.c_uint(), ctypes.c_int()
        cuda.cuDeviceGet(ctypes.byref(dev), d)
        cuda.cuDevicePrimaryCtxGetState(dev, ctypes.byref(flags), ctypes.byref(on))
        if on.value:
            active.append(d)
    with open({str(out)!r} + f"/contexts{{_rank}}.json", "w") as fh:
        json.dump(active, fh)
atexit.register(_contexts)
"""
