"""Same seed, same numbers on every backend (within tolerance, never bitwise)."""

import numpy as np
import pytest

from mlp_xp import MLP, fit


@pytest.fixture(scope="module")
def small_digits():
    r = np.random.default_rng(7)
    X = r.random((96, 784)).astype(np.float32)
    y = np.arange(96) % 10
    return X, y


def test_forward_and_gradients_agree_with_numpy(backend, small_digits):
    X, y = small_digits
    ref = MLP(784, "300,maxout:50:2", 10, activation="tanh", l2=1e-3, backend="cpu", seed=5)
    other = MLP(784, "300,maxout:50:2", 10, activation="tanh", l2=1e-3, backend=backend, seed=5)
    for k, v in ref.params_numpy().items():
        np.testing.assert_array_equal(other.params_numpy()[k], v)  # same host draw
    Xd = backend.asarray(X)
    np.testing.assert_allclose(backend.to_numpy(other.forward(Xd)), ref.forward(X),
                               rtol=1e-4, atol=1e-6)
    loss_ref, g_ref = ref.loss_and_grads(X, ref.targets(y))
    loss, g = other.loss_and_grads(Xd, other.targets(backend.asarray(y)))
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-5)
    for k in g_ref:
        np.testing.assert_allclose(backend.to_numpy(g[k]), g_ref[k], rtol=1e-3, atol=1e-6,
                                   err_msg=k)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_a_short_training_run_agrees_with_numpy(backend, small_digits, optimizer):
    X, y = small_digits
    runs = []
    for b in ("cpu", backend):
        model = MLP(784, (32, 16), 10, backend=b, seed=2, l2=1e-4)
        lr = 0.01 if optimizer == "adam" else 0.1
        history = fit(model, X[:80], y[:80], X[80:], y[80:], epochs=3, batch_size=16,
                      optimizer=optimizer, lr=lr, seed=9)
        runs.append((history, model.params_numpy()))
    (h_ref, p_ref), (h, p) = runs
    np.testing.assert_allclose(h.train_loss, h_ref.train_loss, rtol=1e-4)
    for k in p_ref:
        np.testing.assert_allclose(p[k], p_ref[k], rtol=1e-3, atol=1e-5, err_msg=k)
