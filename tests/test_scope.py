"""``with mlp_xp.device(...)``, ``model.to(...)`` and reprs that say the device."""

import threading

import numpy as np
import pytest

import mlp_xp
from mlp_xp import MLP, SGD, Adam, get_backend, load_model, save_model
from mlp_xp.errors import DeviceError
from mlp_xp.sklearn import MLPClassifier

from .conftest import simulated_gpu


def test_a_device_block_is_the_default_inside_it_and_only_there(request, tmp_path, monkeypatch):
    simulated_gpu(request)
    monkeypatch.setenv("MLP_XP_DEVICE", "cpu")
    save_model(tmp_path / "m.npz", MLP(4, (3,), 2, backend="cpu"))
    with mlp_xp.device("gpu:1") as backend:
        assert backend == get_backend("gpu:1") == get_backend() == get_backend("auto")
        assert MLP(4, (3,), 2).device == "gpu:1"
        assert load_model(tmp_path / "m.npz").device == "gpu:1"
        assert MLP(4, (3,), 2, backend="cpu").device == "cpu"  # a named device wins
        with mlp_xp.device("cpu"):
            assert MLP(4, (3,), 2).device == "cpu"  # the innermost block applies
        assert MLP(4, (3,), 2).device == "gpu:1"
    assert MLP(4, (3,), 2).device == "cpu"  # the environment variable again


def test_a_device_block_is_private_to_its_thread(request):
    simulated_gpu(request)
    seen = []
    with mlp_xp.device("gpu:1"):
        thread = threading.Thread(target=lambda: seen.append(get_backend()))
        thread.start()
        thread.join()
        assert get_backend() == get_backend("gpu:1")
    assert seen[0] != get_backend("gpu:1")


def test_a_device_block_on_a_missing_gpu_fails_where_it_starts(request):
    simulated_gpu(request)
    with pytest.raises(DeviceError, match="no usable GPU 5"), mlp_xp.device("gpu:5"):
        pytest.fail("the block must not run")  # pragma: no cover


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_with_auto_take_the_block_s_device(request):
    simulated_gpu(request)
    X = np.random.default_rng(0).random((40, 4))
    y = np.arange(40) % 2
    with mlp_xp.device("gpu:1"):
        clf = MLPClassifier((3,), max_iter=2, random_state=0).fit(X, y)
    assert clf.model_.device == "gpu:1"


def test_to_copies_a_network_to_the_device_it_names(request):
    simulated_gpu(request)
    cpu = MLP(4, (3,), 2, backend="cpu", seed=3)
    moved = cpu.to("gpu:1")
    assert moved.device == "gpu:1" and cpu.device == "cpu"
    assert moved.params.buffer.device.id == 1
    back = moved.to("cpu")
    for k, v in cpu.params_numpy().items():
        np.testing.assert_array_equal(back.params_numpy()[k], v)


def test_reprs_say_the_device(request):
    simulated_gpu(request)
    model = MLP(4, (3,), 2, backend="gpu:1")
    assert repr(model) == (
        "MLP(4-3-2, activations=['relu'], task='classify', l2=0.0, dtype=float32, device='gpu:1')"
    )
    assert repr(SGD(model.params, model.backend, 0.1, 0.9)) == (
        "SGD(lr=0.1, momentum=0.9, device='gpu:1')"
    )
    assert "device='gpu:1'" in repr(Adam(model.params, model.backend))
    assert repr(model.backend).startswith("<Backend 'gpu:1': cupy on gpu:1 (")
    assert repr(get_backend("cpu")).startswith("<Backend 'cpu': numpy on cpu (")
    strict = get_backend("array-api-strict:device1")
    assert strict.spec == "array-api-strict:device1" and get_backend(strict.spec) == strict
