"""The PyTorch backend: device names, probes and ``auto`` (PyTorch's device queries faked
where this machine has no such device), model files and DLPack across backends, the
same trajectory as NumPy from the same seed, and no hidden reads back in a step.

Every backend-parametrised test of the suite also runs on ``torch:cpu`` (tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

from mlp_xp import MLP, fit, load_model, save_model  # noqa: E402
from mlp_xp.backends import get_backend  # noqa: E402
from mlp_xp.backends import torch as torch_backend  # noqa: E402
from mlp_xp.cli import main  # noqa: E402
from mlp_xp.data import load_digits  # noqa: E402
from mlp_xp.devices import parse_device  # noqa: E402
from mlp_xp.errors import BackendMismatchError, ConfigError, DeviceError  # noqa: E402
from mlp_xp.train import Callback, TrainConfig, Trainer  # noqa: E402

from . import mpi_helpers as mpi  # noqa: E402
from .conftest import simulated_gpu  # noqa: E402
from .helpers import xp_assert_close, xp_assert_equal  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_probes():
    """Probes are cached per process: each test probes anew (and leaves no fake behind)."""
    torch_backend.torch_probe.cache_clear()
    yield
    torch_backend.torch_probe.cache_clear()


RUN_PROBE = torch_backend.run_probe


def on_the_cpu(torch_module, device, host):
    """The probe's own work, run on PyTorch's CPU: stands in for a device this machine lacks."""
    return RUN_PROBE(torch_module, "cpu", host)


@pytest.fixture
def fake_cuda(monkeypatch):
    """PyTorch says it was built for CUDA and sees two GPUs (the probe's work runs on the CPU)."""
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Fake GPU {i}")
    monkeypatch.setattr(torch_backend, "run_probe", on_the_cpu)


@pytest.fixture
def fake_mps(monkeypatch):
    """A Mac whose PyTorch sees the Apple GPU."""
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch_backend, "run_probe", on_the_cpu)


# -- names, probes, auto ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kind, index",
    [("torch", "", 0), ("torch:cpu", "cpu", 0), ("torch:cuda", "cuda", 0),
     ("torch:cuda:1", "cuda", 1), ("mps", "mps", 0), ("torch:mps", "mps", 0),
     ("xpu", "xpu", 0), ("xpu:2", "xpu", 2), ("TORCH:XPU:1", "xpu", 1)],
)  # fmt: skip
def test_pytorch_device_names(name, kind, index):
    assert parse_device(name) == parse_device(name.lower())
    spec = parse_device(name)
    assert (spec.kind, spec.name, spec.index) == ("torch", kind, index)
    assert parse_device("gpu:1").kind == "gpu"  # gpu:N stays CuPy


@pytest.mark.parametrize("name", ["torch:3", "mps:1", "torch:cpu:1", "xpu:", "torch:tpu"])
def test_malformed_pytorch_names_are_refused(name):
    with pytest.raises(ConfigError, match="unknown device"):
        parse_device(name)


def test_torch_cpu_is_probed_and_names_itself():
    b = get_backend("torch:cpu")
    assert b.name == "torch" and b.kind == "cpu" and b.spec == "torch:cpu"
    assert get_backend(b.spec) == b and get_backend("torch") == b  # the best here is the CPU
    assert b != get_backend("cpu") and "PyTorch" in b.device
    probe = torch_backend.torch_probe("cpu")
    assert probe.ok and probe.torch_version == torch.__version__


def test_the_environment_and_the_api_take_the_same_names(monkeypatch, rng):
    monkeypatch.setenv("MLP_XP_DEVICE", "torch:cpu")
    assert get_backend().spec == "torch:cpu"
    model = MLP(6, (4,), 3, seed=0)
    assert model.device == "torch:cpu" and isinstance(model.params["W1"], torch.Tensor)
    back = model.to("cpu")
    assert back.device == "cpu" and back.to("torch:cpu").device == "torch:cpu"
    X = rng.random((4, 6)).astype(np.float32)
    np.testing.assert_allclose(model.backend.get(model.forward(X)), back.forward(X), rtol=1e-6)


def test_a_missing_gpu_is_one_line_naming_what_is_missing_and_the_fix(capsys):
    for name, missing in (("torch:cuda:0", "CUDA or ROCm"), ("mps", "MPS"), ("xpu:0", "XPU")):
        assert main(["train", "--device", name, "--epochs", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and missing in err[0] and "install" in err[0], err


def test_a_device_that_fails_its_kernel_is_refused_with_the_failure(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match="the cuda:0 device does not work"):
        get_backend("torch:cuda")  # the CPU wheel cannot run the probe's kernel on CUDA
    auto = get_backend("auto")
    assert auto.name == "numpy" and "cuda:0 device does not work" in auto.note


def test_auto_without_pytorch_gpus_says_why_each_was_passed_over():
    auto = get_backend("auto")
    assert auto.name == "numpy" and auto.note.startswith("auto: passed over CuPy GPU (")
    for label in ("PyTorch CUDA/ROCm GPU (", "MPS (", "XPU ("):
        assert label in auto.note
    assert auto.note.endswith("so the CPU is used") and "\n" not in auto.note


def test_auto_prefers_cupy_then_pytorch_cuda_then_mps(request, fake_cuda, fake_mps):
    auto = get_backend("auto")
    assert (auto.name, auto.spec) == ("torch", "torch:cuda:0")
    assert auto.note.startswith("auto: passed over CuPy GPU (CuPy is not installed")
    assert get_backend("torch").spec == "torch:cuda:0"  # PyTorch's best device
    simulated_gpu(request)
    assert get_backend("auto").name == "cupy"


def test_auto_takes_mps_when_pytorch_sees_no_cuda_gpu(fake_mps):
    auto = get_backend("auto")
    assert auto.spec == "mps" and "PyTorch CUDA/ROCm GPU (this PyTorch build" in auto.note


def test_auto_takes_xpu_last(monkeypatch):
    monkeypatch.setattr(torch.version, "xpu", "20250101", raising=False)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: True)
    monkeypatch.setattr(torch.xpu, "device_count", lambda: 1)
    monkeypatch.setattr(torch.xpu, "get_device_name", lambda i=0: "Fake Arc")
    monkeypatch.setattr(torch_backend, "run_probe", on_the_cpu)
    auto = get_backend("auto")
    assert auto.spec == "torch:xpu:0" and "MPS (MPS exists only on macOS)" in auto.note


def test_mps_refuses_float64_in_one_line(fake_mps, capsys):
    mps = get_backend("mps")
    assert mps.spec == "mps" and mps.kind == "gpu"
    with pytest.raises(DeviceError, match="MPS has no float64"):
        MLP(4, (3,), 2, backend=mps, dtype="float64")
    assert main("train --device mps --dtype float64 --epochs 1".split()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MPS has no float64" in err[0] and "--dtype float32" in err[0]


def test_devices_lists_every_backend_and_device_with_its_verdict(fake_cuda, capsys):
    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["devices"]
    verdicts = {r["device"]: r["available"] for r in rows if r["backend"] == "torch"}
    assert verdicts == {"torch:cpu": True, "torch:cuda:0": True, "torch:cuda:1": True,
                        "mps": False, "": False}  # fmt: skip
    xpu = [r for r in rows if r["backend"] == "torch" and r["type"] == "XPU"]
    assert "no XPU support" in xpu[0]["reason"]
    assert main(["devices"]) == 0
    text = capsys.readouterr().out
    assert "torch:cuda:1 (Fake GPU 1)  [available]" in text
    assert "--device auto uses: torch" in text and "passed over CuPy GPU" in text


def test_import_mlp_xp_loads_no_pytorch_and_auto_reads_the_build_without_it():
    code = (
        "import sys, mlp_xp\nfrom mlp_xp.backends import get_backend\n"
        "assert 'torch' not in sys.modules\nb = get_backend('auto')\n"
        "print(b.name, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["numpy", "False"]  # a CPU wheel: auto imports no PyTorch


# -- one math on the tensors -----------------------------------------------------------


def test_model_files_load_on_every_other_backend(request, tmp_path, rng):
    simulated_gpu(request)
    X = rng.random((5, 6)).astype(np.float32)
    backends = ["cpu", "torch:cpu", "array-api-strict", "gpu"]
    for writer in backends:
        model = MLP(6, (4,), 3, backend=writer, seed=1)
        path = save_model(tmp_path / f"{writer.replace(':', '-')}.npz", model)
        expected = model.backend.get(model.forward(model.backend.put(X)))
        for reader in backends:
            loaded = load_model(path, reader)
            assert loaded.backend == get_backend(reader)
            got = loaded.forward(loaded.backend.put(X))
            xp_assert_close(got, expected, loaded.backend, rtol=1e-6, err_msg=f"{writer}->{reader}")


def test_a_torch_tensor_is_taken_in_place_without_a_copy(rng):
    b = get_backend("torch:cpu")
    X = torch.asarray(rng.random((40, 6)).astype(np.float32))
    y = torch.asarray(np.arange(40) % 3)
    assert b.accept(X) is X
    model = MLP(6, (4,), 3, backend=b, seed=0)
    trainer = Trainer(model, X, y, config=TrainConfig(batch_size=8), image_shape=None)
    assert trainer.X.data_ptr() == X.data_ptr()  # the trainer reads the caller's memory
    X[0, 0] = 7.0
    assert float(trainer.X[0, 0]) == 7.0
    numpy_model = MLP(6, (4,), 3, backend="cpu", seed=0)  # and NumPy reads it in place too
    assert np.shares_memory(numpy_model.backend.accept(X), X.numpy())


def test_an_array_of_another_device_is_refused_naming_both(request, rng):
    simulated_gpu(request)
    on_gpu = get_backend("gpu").put(rng.random((3, 6)).astype(np.float32))
    model = MLP(6, (4,), 3, backend="torch:cpu", seed=0)
    with pytest.raises(BackendMismatchError, match="cupy array on gpu:0.*torch"):
        model.forward(on_gpu)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_the_estimators_take_pytorch_device_names(rng):
    from mlp_xp.sklearn import MLPClassifier

    X = rng.random((60, 5)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    clf = MLPClassifier((8,), max_iter=20, random_state=0, device="torch:cpu").fit(X, y)
    assert clf.model_.backend.spec == "torch:cpu"
    ref = MLPClassifier((8,), max_iter=20, random_state=0, device="cpu").fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-4, atol=1e-6)


class CountReads(Callback):
    """Counts reads of a tensor's value by the host (``item``, ``bool``, ``float``, ``int``,
    ``tolist``, ``numpy``) from the start of epoch 2 to its last step."""

    READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy")

    def __init__(self, monkeypatch):
        self.monkeypatch, self.reads, self.counting = monkeypatch, [], False
        for name in self.READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, original))

    def _counted(self, name, original):
        def read(tensor, *args, **kwargs):
            if self.counting:
                self.reads.append(name)
            return original(tensor, *args, **kwargs)

        return read

    def on_epoch_start(self, trainer, epoch, steps):
        self.counting = epoch == 2

    def on_step(self, trainer, step):
        if step == trainer.steps_per_epoch:
            self.counting = False


def test_a_training_step_on_torch_reads_nothing_back(monkeypatch, digits):
    X = digits.images[:640].reshape(640, -1).astype(np.float32) / 255
    model = MLP(backend="torch:cpu", seed=0)
    counter = CountReads(monkeypatch)
    fit(model, X, digits.labels[:640], epochs=2, batch_size=64, augment="affine",
        dropout=0.2, optimizer="adam", lr=1e-3, callbacks=[counter])  # fmt: skip
    assert counter.reads == []
    counter.counting = True  # the counter does see a read
    float(model.penalty())
    assert counter.reads == ["__float__"]


@pytest.mark.gpu
def test_a_training_step_on_a_pytorch_gpu_does_not_synchronise(digits):
    probe = torch_backend.torch_probe("cuda")
    if not probe.ok:
        pytest.skip(f"no usable PyTorch CUDA/ROCm GPU: {probe.reason}")

    class Strict(Callback):  # PyTorch raises on any synchronising call inside the steps
        def on_epoch_start(self, trainer, epoch, steps):
            torch.cuda.set_sync_debug_mode("error" if epoch == 2 else "default")

        def on_step(self, trainer, step):
            if step == trainer.steps_per_epoch:
                torch.cuda.set_sync_debug_mode("default")

    X = digits.images[:640].reshape(640, -1).astype(np.float32) / 255
    model = MLP(backend="torch:cuda", seed=0)
    try:
        fit(model, X, digits.labels[:640], epochs=2, batch_size=64, augment="affine",
            dropout=0.2, callbacks=[Strict()])  # fmt: skip
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_distributed_refuses_pytorch_gpu_ranks_in_one_line(rng):
    from mlp_xp.parallel import DistributedTrainer, LocalWorld

    backend = get_backend("torch:cpu")
    model = MLP(6, (4,), 3, backend=backend, seed=0)
    backend.kind = "gpu"  # what a torch:cuda backend is, without one here
    backend.array_device = torch.device("cuda:0")
    world = LocalWorld()
    world.size = 2
    with pytest.raises(ConfigError, match="PyTorch ranks on the CPU only.*--device gpu"):
        DistributedTrainer(world, model, rng.random((8, 6)), np.arange(8) % 3)


@pytest.mark.mpi
def test_torch_cpu_ranks_over_mpi_end_with_the_parameters_of_one_process(tmp_path):
    args = ["--hidden", "64", "--epochs", "2", "--seed", "3", "--quiet", "--batch-size", "64",
            "--augment", "affine", "--device", "torch:cpu"]  # fmt: skip
    job = mpi.run(2, ["train", "--distributed", *args, "--out", str(tmp_path / "n.npz")])
    assert job.returncode == 0, job.stderr
    assert main(["train", *args, "--out", str(tmp_path / "one.npz")]) == 0
    mpi.assert_same_model(tmp_path / "n.npz", tmp_path / "one.npz")


def test_bench_times_numpy_and_torch_side_by_side(capsys):
    argv = "bench --devices cpu,torch:cpu --samples 256 --batch-sizes 64 --repeats 1 --json"
    assert main([*argv.split(), "--no-augment-cost"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["backend"] for r in result["results"]] == ["numpy", "torch"]
    assert all(r["epoch_seconds"] > 0 for r in result["results"])


def test_compare_peers_puts_mlp_xp_on_torch_beside_pytorch_nn(capsys):
    from .helpers import load_module
    from .test_scripts import SCRIPTS

    result = load_module(SCRIPTS / "compare_peers.py").main(
        "--samples 512 --repeats 1 --peers torch".split()
    )
    rows = {(r["framework"], r["device"]): r for r in result["rows"]}
    ours, nn = rows[("mlp_xp on torch", "cpu")], rows[("pytorch", "cpu")]
    assert ours["torch_nn_time_ratio"] == pytest.approx(ours["epoch_seconds"] / nn["epoch_seconds"])
    assert "x PyTorch nn's time on these tensors" in capsys.readouterr().out


@pytest.mark.slow
def test_the_default_network_follows_numpy_s_trajectory_on_torch():
    """200 steps of the default recipe on the default 784-300-100-10 network (momentum,
    the weights' average, affine distortions, dropout 0.2) from one seed end with the same
    parameters on NumPy and on PyTorch's CPU to 1e-10: the same batches, distortions and
    dropout masks on both. In float64: in float32 the two libraries' different rounding
    (their matrix products sum in different orders) grows along the trajectory to about
    1e-2 by 300 steps, which would hide a wrong batch or mask."""
    digits = load_digits()
    X = digits.images[:1280].reshape(1280, -1).astype(np.float32) / 255
    runs = []
    for device in ("cpu", "torch:cpu"):
        model = MLP(backend=device, seed=3, dtype="float64")
        history = fit(model, X, digits.labels[:1280], epochs=10, batch_size=64,
                      augment="affine", dropout=0.2, seed=11)  # fmt: skip
        runs.append((model, history))
    (ref, h_ref), (other, h) = runs
    assert len(h.train_loss) == 10 and h_ref.train_loss[-1] < h_ref.train_loss[0] / 2
    np.testing.assert_allclose(h.train_loss, h_ref.train_loss, rtol=1e-12)
    for k, v in ref.params.items():
        xp_assert_close(other.params[k], v, other.backend, rtol=0, atol=1e-10, err_msg=k)
    xp_assert_equal(other.predict(X[:200]), ref.predict(X[:200]), other.backend)


def test_the_cupy_fast_step_asked_of_a_pytorch_gpu_model_is_refused(monkeypatch, rng):
    """gpu_step='fast' was accepted for any GPU model: a PyTorch GPU one trained with the
    generic step without a word."""
    model = MLP(8, (4,), 3, backend="torch:cpu", seed=0)
    monkeypatch.setattr(model.backend, "kind", "gpu")  # as torch:cuda:0 is
    X, y = rng.normal(size=(16, 8)).astype(np.float32), rng.integers(0, 3, 16)
    with pytest.raises(ConfigError, match="gpu_step='fast' needs a CuPy"):
        Trainer(model, X, y, config=TrainConfig(gpu_step="fast", augment="none"))


def test_free_memory_on_a_pytorch_gpu_counts_what_its_cache_holds_unused(fake_cuda, monkeypatch):
    """Only CUDA's free memory was counted: blocks PyTorch's caching allocator keeps for
    reuse made a second network in the same process look as if it did not fit."""
    backend = get_backend("torch:cuda:0")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 500)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 200)
    assert backend.free_device_bytes() == 1300
