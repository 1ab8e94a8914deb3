"""End-to-end checks that need a CUDA device (skipped, saying why, without one;
``MLP_XP_REQUIRE_GPU=1`` turns the skip into a failure)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mlp_xp import MLP, fit, load_model
from mlp_xp.backend import device_error_for
from mlp_xp.cli import main
from mlp_xp.errors import DeviceError

from .helpers import xp_assert_close

pytestmark = pytest.mark.gpu


def test_train_on_gpu_then_evaluate_on_cpu_without_cupy(gpu_backend, tmp_path, capsys):
    out = tmp_path / "gpu.npz"
    assert (
        main(
            [
                *"train --device gpu --epochs 3 --out".split(),
                str(out),
                *"--json --augment affine".split(),
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["backend"] == "cupy" and trained["val_accuracy"] > 0.85
    code = (
        "import sys, json; sys.modules['cupy'] = None\nfrom mlp_xp.cli import main\n"
        f"sys.exit(main(['evaluate', {str(out)!r}, '--device', 'cpu', '--json']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "numpy"
    assert result["accuracy"] == pytest.approx(trained["val_accuracy"], abs=2e-3)


def test_gpu_and_cpu_training_agree(gpu_backend, digits):
    X = (digits.images[::10] / 255.0).reshape(-1, 784).astype(np.float32)
    y = digits.labels[::10]
    params = []
    for b in ("cpu", gpu_backend):
        model = MLP(784, (64, 32), 10, backend=b, seed=3, l2=1e-4)
        fit(
            model,
            X,
            y,
            epochs=2,
            batch_size=50,
            augment="elastic",
            dropout=0.1,
            optimizer="adam",
            lr=1e-3,
        )
        params.append(model.params_numpy())
    for k in params[0]:
        np.testing.assert_allclose(params[1][k], params[0][k], rtol=1e-3, atol=1e-4)


def test_no_host_sync_inside_an_epoch(gpu_backend, digits, monkeypatch):
    """The loop copies device->host once per epoch (the step losses), not per step."""
    calls = []
    real = gpu_backend.get
    monkeypatch.setattr(gpu_backend, "get", lambda x: calls.append(1) or real(x))
    X = (digits.images[:640] / 255.0).reshape(-1, 784).astype(np.float32)
    model = MLP(784, (32,), 10, backend=gpu_backend, seed=0)
    fit(model, X, digits.labels[:640], epochs=2, batch_size=32, augment="none")
    assert len(calls) == 2  # 20 steps per epoch, one copy per epoch


def test_gpu_out_of_memory_is_a_clear_error(gpu_backend):
    cupy = gpu_backend.cupy
    with pytest.raises(Exception) as info:
        cupy.empty(1 << 50, dtype=cupy.uint8)  # a petabyte
    error = device_error_for(info.value)
    assert isinstance(error, DeviceError) and "out of memory" in str(error)


def test_loading_a_model_onto_the_gpu(gpu_backend, tmp_path):
    from mlp_xp import save_model

    cpu = MLP(784, (16,), 10, backend="cpu", seed=0)
    save_model(tmp_path / "m.npz", cpu)
    gpu = load_model(tmp_path / "m.npz", gpu_backend)
    X = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    xp_assert_close(
        gpu.forward(gpu.backend.put(X)), cpu.forward(X), gpu_backend, rtol=1e-4, atol=1e-6
    )
