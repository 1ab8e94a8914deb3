"""Inputs as users hold them: NumPy, pandas, DLPack arrays on the host or on a GPU.

On the counting CuPy double, an array already on the model's GPU (a CuPy array, or a CUDA
tensor through DLPack) is used in place, with no copy either way; host data is moved once;
an array on another device is the mismatch error, which names both devices.
"""

import numpy as np
import pandas as pd
import pytest

from mlp_xp import MLP, TrainConfig, Trainer, fit, get_backend
from mlp_xp.errors import BackendMismatchError, DataError
from mlp_xp.sklearn import MLPClassifier, MLPRegressor

from .conftest import simulated_gpu
from .cupy_double import counting
from .dlpack_producers import CudaTensor, HostTensor

SMALL = TrainConfig(augment="none", batch_size=32)
HOST_KINDS = {
    "numpy": lambda a: a,
    "list": lambda a: a.tolist(),
    "pandas": pd.DataFrame,
    "dlpack": HostTensor,
}


@pytest.fixture(scope="module")
def data():
    r = np.random.default_rng(0)
    X = r.random((120, 12), dtype=np.float32)
    return X, (X[:, :3].sum(axis=1) * 3).astype(np.int64) % 3


@pytest.mark.parametrize("kind", HOST_KINDS)
def test_host_arrays_of_every_kind_give_the_same_results(backend, data, kind):
    X, y = data
    as_kind = HOST_KINDS[kind]
    runs = []
    for inputs in ((X, y), (as_kind(X), as_kind(y) if kind != "pandas" else pd.Series(y))):
        model = MLP(12, (8,), 3, backend=backend, seed=0)
        fit(model, *inputs, epochs=2, batch_size=32, augment="none")
        out = backend.get(model.forward(inputs[0]))
        runs.append((out, model.evaluate(*inputs)))
    # the same training; a list is read as float64, and a float64 forward pass rounds less
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-6)
    assert runs[1][1] == pytest.approx(runs[0][1], rel=1e-6)


def test_a_gpu_array_is_used_in_place_with_no_copy_either_way(request, data):
    simulated_gpu(request)
    gpu = get_backend("gpu")
    X, y = data
    model = MLP(12, (8,), 3, backend=gpu, seed=0)
    on_gpu = gpu.put(X)
    for given in (on_gpu, CudaTensor(on_gpu)):
        with counting() as c:
            model.forward(given)
        assert (c.counts.h2d, c.counts.d2h, c.counts.syncs) == (0, 0, 0)
        trainer = Trainer(model, given, gpu.put(y), config=SMALL, image_shape=None)
        on_gpu[0, 0] = 7.0  # the trainer reads the caller's memory, not a copy of it
        assert float(trainer.X[0, 0]) == 7.0
        on_gpu[0, 0] = float(X[0, 0])


def test_host_data_given_to_a_gpu_model_is_moved_once(request, data):
    simulated_gpu(request)
    gpu = get_backend("gpu")
    X, y = data
    counted = {}
    for name, inputs in {
        "host": (X, y),
        "torch-like": (HostTensor(X), HostTensor(y)),
        "gpu": (gpu.put(X), gpu.put(y)),
        "cuda dlpack": (CudaTensor(gpu.put(X)), CudaTensor(gpu.put(y))),
    }.items():
        model = MLP(12, (8,), 3, backend=gpu, seed=0)
        with counting() as c:
            fit(model, *inputs, epochs=2, batch_size=32, augment="none")
        counted[name] = c.counts.h2d
        with counting() as c:
            model.forward(inputs[0])
        assert c.counts.h2d == (0 if "gpu" in name or "cuda" in name else 1)
    assert counted["host"] - counted["gpu"] == 2  # X and y, once each
    assert counted["torch-like"] == counted["host"]
    assert counted["cuda dlpack"] == counted["gpu"]


def test_an_array_on_another_device_is_the_mismatch_error_naming_both(request, data):
    simulated_gpu(request)
    X, y = data
    on_1 = get_backend("gpu:1").put(X)
    model = MLP(12, (8,), 3, backend="gpu", seed=0)
    named = r"tensorlib.CudaTensor on gpu:1 .*cupy \(gpu:0\)"
    with pytest.raises(BackendMismatchError, match=named):
        model.forward(CudaTensor(on_1))
    with pytest.raises(BackendMismatchError, match=r"training inputs X is a cupy array on gpu:1"):
        fit(model, on_1, y, epochs=1, augment="none")
    cpu = MLP(12, (8,), 3, backend="cpu", seed=0)
    with pytest.raises(BackendMismatchError, match=r"CudaTensor on gpu:1 but .*numpy \(cpu\)"):
        cpu.predict(CudaTensor(on_1))
    with pytest.raises(BackendMismatchError, match=r"labels is a cupy array on gpu:1.*numpy"):
        cpu.evaluate(X, get_backend("gpu:1").put(y))


def test_an_unreadable_array_is_a_data_error():
    class Broken:
        def __dlpack__(self, **kwargs):
            raise BufferError("cannot export")

        def __dlpack_device__(self):
            return (1, 0)

        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("detach it first")

    with pytest.raises(DataError, match="input .*Broken.* cannot be read as an array: detach"):
        MLP(12, (8,), 3, backend="cpu").forward(Broken())


def _fitted(estimator, X, y):
    with counting() as c:
        estimator.fit(X, y)
    return estimator, c.counts


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_train_and_predict_on_gpu_rows_in_place(request, data):
    simulated_gpu(request)
    X, y = data
    labels = np.array(["a", "b", "c"])[y]
    gpu1 = get_backend("gpu:1")
    settings = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    host, host_counts = _fitted(MLPClassifier(device="gpu:1", **settings), X, labels)
    rows = CudaTensor(gpu1.put(X))
    auto, auto_counts = _fitted(MLPClassifier(**settings), rows, labels)  # auto follows the rows
    assert auto.model_.backend == gpu1 and auto.n_features_in_ == 12
    assert host_counts.h2d - auto_counts.h2d == 1  # the rows were not copied
    np.testing.assert_array_equal(auto.coefs_[0], host.coefs_[0])
    with counting() as c:
        predicted = auto.predict(rows)
    assert c.counts.h2d == 0 and c.counts.d2h == 1  # the labels' indices come back
    np.testing.assert_array_equal(predicted, host.predict(X))
    assert auto.score(gpu1.put(X), labels) == host.score(X, labels)
    with pytest.raises(BackendMismatchError, match="X is a cupy array on gpu:0 but .*gpu:1"):
        auto.predict(get_backend("gpu").put(X))
    with pytest.raises(DataError, match="X has 11 features, but MLPClassifier is expecting 12"):
        auto.predict(gpu1.put(X[:, :11]))
    bad = X.copy()
    bad[3, 4] = np.nan
    with pytest.raises(DataError, match="NaN or infinity"):
        MLPClassifier(**settings).fit(gpu1.put(bad), labels)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_regressor_with_early_stopping_takes_gpu_rows_and_targets(request, data):
    simulated_gpu(request)
    X, _ = data
    targets = np.c_[X[:, 0] - X[:, 1], X[:, 2] * 2]
    gpu = get_backend("gpu")
    settings = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0, early_stopping=True)
    host = MLPRegressor(device="gpu", **settings).fit(X, targets)
    on_gpu = MLPRegressor(device="gpu", **settings).fit(gpu.put(X), gpu.put(targets))
    assert on_gpu.validation_scores_ == host.validation_scores_
    np.testing.assert_array_equal(on_gpu.predict(gpu.put(X)), host.predict(X))


def test_torch_tensors_are_read_in_place_on_the_host(data):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    X, y = data
    tensor = torch.from_numpy(X)
    model = MLP(12, (8,), 3, backend="cpu", seed=0)
    np.testing.assert_array_equal(model.forward(tensor), model.forward(X))
    trainer = Trainer(model, tensor, torch.from_numpy(y), config=SMALL, image_shape=None)
    assert np.shares_memory(trainer.X, X)  # a float32 tensor is used without a copy
    clf = MLPClassifier((8,), max_iter=2, random_state=0, device="cpu")
    with pytest.warns(Warning):
        clf.fit(tensor, torch.from_numpy(y))
    np.testing.assert_array_equal(clf.predict(tensor), clf.predict(X))
    with pytest.raises(DataError, match="torch.Tensor.* cannot be read as an array"):
        model.forward(tensor.clone().requires_grad_(True))


def test_jax_arrays_are_read_on_the_host(data):
    jnp = pytest.importorskip("jax.numpy", reason="JAX is not installed")
    X, y = data
    model = MLP(12, (8,), 3, backend="cpu", seed=0)
    np.testing.assert_array_equal(model.forward(jnp.asarray(X)), model.forward(X))
    fit(model, jnp.asarray(X), jnp.asarray(y), epochs=1, batch_size=32, augment="none")
    assert model.evaluate(jnp.asarray(X), jnp.asarray(y)) == model.evaluate(X, y)
