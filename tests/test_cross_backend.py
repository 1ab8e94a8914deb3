"""Same seed, same numbers on every backend as on NumPy (within tolerance, never bitwise)."""

import numpy as np
import pytest

from mlp_xp import MLP, fit

from .helpers import xp_assert_close, xp_assert_equal


@pytest.fixture(scope="module")
def small_digits():
    r = np.random.default_rng(7)
    X = r.random((96, 784)).astype(np.float32)
    y = np.arange(96) % 10
    return X, y


def test_forward_and_gradients_agree_with_numpy(other_backend, small_digits):
    backend = other_backend
    X, y = small_digits
    kw = dict(activation="tanh", l2=1e-3, seed=5)
    ref = MLP(784, "300,maxout:50:2", 10, backend="cpu", **kw)
    other = MLP(784, "300,maxout:50:2", 10, backend=backend, **kw)
    for k, v in ref.params.items():
        xp_assert_equal(other.params[k], v, backend)  # the same host draw
    Xd = backend.put(X)
    xp_assert_close(other.forward(Xd), ref.forward(X), backend, rtol=1e-4, atol=1e-6)
    loss_ref, g_ref = ref.loss_and_grads(X, ref.targets(y))
    loss, g = other.loss_and_grads(Xd, other.targets(backend.put(y)))
    xp_assert_close(loss, loss_ref, backend, rtol=1e-5)
    for k in g_ref:
        xp_assert_close(g[k], g_ref[k], backend, rtol=1e-3, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_a_short_training_run_agrees_with_numpy(other_backend, small_digits, optimizer):
    X, y = small_digits
    runs = []
    for b in ("cpu", other_backend):
        model = MLP(784, (32, 16), 10, backend=b, seed=2, l2=1e-4)
        lr = 0.01 if optimizer == "adam" else 0.1
        history = fit(
            model,
            X[:80],
            y[:80],
            X[80:],
            y[80:],
            epochs=3,
            batch_size=16,
            optimizer=optimizer,
            lr=lr,
            seed=9,
        )
        runs.append((history, model))
    (h_ref, m_ref), (h, m) = runs
    np.testing.assert_allclose(h.train_loss, h_ref.train_loss, rtol=1e-4)
    for k, v in m_ref.params.items():
        xp_assert_close(m.params[k], v, other_backend, rtol=1e-3, atol=1e-5, err_msg=k)
