"""More than one GPU, and workstations that are broken: on the counting CuPy double."""

import json

import numpy as np
import pytest

from mlp_xp import MLP, Trainer, fit, load_model, save_model
from mlp_xp.backends import device_error_for, get_backend
from mlp_xp.cli import main
from mlp_xp.errors import BackendMismatchError, DeviceError

from .conftest import simulated_gpu
from .cupy_double import STATE, counting


@pytest.fixture(scope="module")
def data():
    r = np.random.default_rng(0)
    return r.random((300, 784), dtype=np.float32), r.integers(0, 10, 300)


@pytest.mark.parametrize("gpu_step", ["generic", "fast"])
def test_gpu_1_keeps_everything_on_gpu_1(request, data, tmp_path, gpu_step):
    cp = simulated_gpu(request)
    with counting() as c:
        model = MLP(backend="gpu:1", l2=1e-4, seed=0, hidden=(32,))
        fit(model, *data, data[0][:50], data[1][:50], epochs=2, batch_size=64,
            dropout=0.1, gpu_step=gpu_step)  # fmt: skip
        model.evaluate(model.backend.put(data[0][:20]), model.backend.put(data[1][:20]))
        save_model(tmp_path / "m.npz", model)
        again = load_model(tmp_path / "m.npz", backend="cuda:1")
        again.predict(again.backend.put(data[0][:5]))
        moved = MLP(backend="cpu", hidden=(8,)).to("gpu:1")
        moved.forward(moved.backend.put(data[0][:3]))
    assert c.counts.allocations.get(0, 0) == 0 and c.counts.allocations[1] > 100
    assert model.params.buffer.device.id == 1 and again.backend.index == 1
    assert cp.cuda.runtime.getDevice() == 0  # the caller's current device is left alone


def test_the_perceptron_on_gpu_1_stays_on_gpu_1(request, capsys):
    simulated_gpu(request)
    with counting() as c:
        assert main("perceptron --toy and --device gpu:1".split()) == 0
    assert c.counts.allocations.get(0, 0) == 0 and c.counts.allocations[1] > 0
    assert "converged" in capsys.readouterr().out


def test_the_environment_variable_names_a_gpu(request, monkeypatch):
    simulated_gpu(request)
    monkeypatch.setenv("MLP_XP_DEVICE", "gpu:1")
    assert get_backend().key == ("cupy", 1) and get_backend() != get_backend("gpu")


def test_an_array_of_another_gpu_is_refused_naming_both(request):
    simulated_gpu(request)
    on_0 = get_backend("gpu").put(np.zeros((2, 784), np.float32))
    model = MLP(backend="gpu:1", hidden=(4,))
    with pytest.raises(BackendMismatchError, match="cupy array on gpu:0.*cupy \\(gpu:1\\)"):
        model.forward(on_0)


def test_a_gpu_that_is_not_there(request, capsys):
    simulated_gpu(request)
    with pytest.raises(DeviceError, match="no usable GPU 2: there is no GPU 2: this machine"):
        get_backend("gpu:2")
    assert main("train --device gpu:7 --epochs 1".split()) == 2
    assert "there is no GPU 7" in capsys.readouterr().err


def test_devices_lists_every_gpu_with_name_memory_and_compute_capability(request, capsys):
    simulated_gpu(request)
    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["devices"]
    gpus = [r for r in rows if r["kind"] == "gpu" and r["backend"] == "cupy"]
    assert [g["device"] for g in gpus] == ["gpu:0", "gpu:1"]
    for g in gpus:
        assert g["available"] and g["name"].startswith("Simulated GPU")
        assert g["memory_bytes"] == STATE.memory and g["compute_capability"] == "9.0"
    assert main(["devices"]) == 0
    text = capsys.readouterr().out
    assert "gpu:1 Simulated GPU 1, 16.0 GiB, compute capability 9.0  [available]" in text


@pytest.mark.parametrize(
    "fault, library",
    [
        ("driver", "NVIDIA driver is missing, or older"),
        ("cublas", "CUDA library cuBLAS"),
        ("nvrtc", "CUDA library NVRTC"),
        ("no-device", "no CUDA device is visible"),
    ],
)
def test_a_broken_cuda_install_is_one_line_naming_the_library_and_the_fix(
    request, fault, library, capsys
):
    simulated_gpu(request, faults=[fault])
    assert main("train --device gpu --epochs 1".split()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and library in err[0] and "--device cpu" in err[0]
    if fault in ("cublas", "nvrtc"):
        assert "pip install '.[gpu]'" in err[0]
    auto = get_backend("auto")
    assert auto.name == "numpy" and library in auto.note
    assert main("bench --devices gpu --samples 256 --batch-sizes 64 --repeats 1".split()) == 2
    assert "error: no usable GPU" in capsys.readouterr().err


def test_bench_without_naming_a_gpu_notes_why_there_is_none(request, capsys):
    simulated_gpu(request, faults=["driver"])
    argv = "bench --samples 256 --batch-sizes 64 --repeats 1 --json --no-augment-cost"
    assert main(argv.split()) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "NVIDIA driver" in result["unavailable"]["gpu"]
    assert {r["backend"] for r in result["results"]} == {"numpy"}


def _pathfinder_error():
    from .cupy_double._faults import missing_nvrtc

    return missing_nvrtc()


@pytest.mark.parametrize(
    "make, expected",
    [
        (_pathfinder_error, "NVRTC"),
        (lambda: ImportError("libcublas.so.12: cannot open shared object file"), "cuBLAS"),
        (lambda: OSError("libcudart.so.12: cannot open shared object file"), "CUDA runtime"),
        (
            lambda: RuntimeError(
                "cudaErrorInsufficientDriver: CUDA driver version is insufficient"
            ),
            "NVIDIA driver",
        ),  # fmt: skip
    ],
)
def test_device_errors_are_recognised_by_what_they_say(make, expected):
    error = device_error_for(make())
    assert isinstance(error, DeviceError) and expected in str(error)
    assert device_error_for(ValueError("a bad value")) is None


def test_a_cupy_array_given_to_a_cpu_model_is_a_mismatch_error(request, data):
    simulated_gpu(request)
    on_gpu = get_backend("gpu").put(data[0][:8])
    model = MLP(backend="cpu", hidden=(4,))
    with pytest.raises(BackendMismatchError, match="cupy array on gpu:0"):
        model.set_params({**model.params_numpy(), "W1": get_backend("gpu").put(np.zeros((784, 4)))})
    with pytest.raises(BackendMismatchError, match="training inputs X is a cupy array"):
        Trainer(model, on_gpu, np.zeros(8, int))
    with pytest.raises(BackendMismatchError, match="cupy array"):
        fit(model, on_gpu, np.zeros(8, int), epochs=1, augment="none")


def test_array_api_strict_devices_prove_the_math_names_its_device(data):
    """array-api-strict refuses to mix devices: every array the math makes must say where."""
    runs = []
    for device in ("array-api-strict", "array-api-strict:device1"):
        model = MLP(784, "32,maxout:8:2", 10, backend=device, seed=0, l2=1e-4)
        history = fit(model, *data, *data, epochs=2, batch_size=64, dropout=0.2,
                      augment="elastic")  # fmt: skip
        assert model.params.buffer.device == model.backend.array_device
        runs.append((history.train_loss, model.params_numpy()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][k], v)


def test_array_api_strict_device_names_keep_their_case():
    from mlp_xp.backends import get_backend

    assert get_backend("array-api-strict:CPU_DEVICE") == get_backend("array-api-strict")
    assert get_backend("array-api-strict:device1").spec == "array-api-strict:device1"
    with pytest.raises(DeviceError, match="no device 'cpu_device'"):
        get_backend("array-api-strict:cpu_device")
