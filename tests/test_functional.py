"""Activations, output functions and losses: values, derivatives, stability."""

import numpy as np
import pytest

from mlp_xp import functional as F
from mlp_xp.errors import ConfigError

from .helpers import numeric_derivative

REFERENCE = {
    "linear": lambda a: a,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "softplus": lambda a: np.log1p(np.exp(a)),
}


@pytest.mark.parametrize("name", sorted(F.ACTIVATIONS))
def test_activation_value_and_central_difference_derivative(backend, name):
    xp = backend.xp
    host = np.linspace(-3.0, 3.0, 61)
    host = host[np.abs(host) > 0.02]  # off the ReLU kink
    act = F.ACTIVATIONS[name]
    a = backend.asarray(host, "float64")
    out = act.fn(xp, a)
    grad = backend.to_numpy(act.grad(xp, a, out))
    np.testing.assert_allclose(backend.to_numpy(out), REFERENCE[name](host), rtol=1e-12, atol=1e-12)

    def host_fn(v):
        return backend.to_numpy(act.fn(xp, backend.asarray(v, "float64")))

    np.testing.assert_allclose(grad, numeric_derivative(host_fn, host), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "tanh", "relu", "linear"])
def test_activations_finite_at_extremes_in_float32(backend, name):
    xp = backend.xp
    a = backend.asarray(np.array([-1e4, -88.0, 0.0, 88.0, 1e4]), "float32")
    act = F.ACTIVATIONS[name]
    out = act.fn(xp, a)
    grad = act.grad(xp, a, out)
    assert np.all(np.isfinite(backend.to_numpy(out)))
    assert np.all(np.isfinite(backend.to_numpy(grad)))
    if name == "sigmoid":
        np.testing.assert_allclose(backend.to_numpy(out)[[0, 2, 4]], [0.0, 0.5, 1.0])
    if name == "softplus":
        np.testing.assert_allclose(backend.to_numpy(out)[[0, 4]], [0.0, 1e4])


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown activation 'swish'"):
        F.activation("swish")


def test_log_softmax_is_finite_for_huge_logits(backend):
    z = backend.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]]), "float32")
    logp = backend.to_numpy(F.log_softmax(backend.xp, z))
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(logp[0, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), [1.0, 1.0], rtol=1e-6)


def test_one_hot_without_index_assignment(backend):
    labels = backend.asarray(np.array([2, 0, 1]), "int64")
    t = backend.to_numpy(F.one_hot(backend.xp, labels, 3, backend.dtype("float32")))
    np.testing.assert_array_equal(t, np.eye(3)[[2, 0, 1]])


LOSS_CASES = {
    "classify": (3, lambda r, n: r.integers(0, 3, n)),
    "binary": (1, lambda r, n: r.integers(0, 2, n)),
    "regress": (2, lambda r, n: r.normal(size=(n, 2))),
}


@pytest.mark.parametrize("task", sorted(LOSS_CASES))
def test_loss_delta_is_the_gradient_of_the_mean_loss(backend, task, rng):
    xp = backend.xp
    k, draw = LOSS_CASES[task]
    loss = F.loss_for_task(task)
    z_host = rng.normal(size=(5, k)) * 2
    labels = backend.asarray(draw(rng, 5))
    t = loss.targets(xp, labels, k, backend.dtype("float64"))
    value, delta = loss.value_and_delta(xp, backend.asarray(z_host, "float64"), t)
    np.testing.assert_allclose(float(value),
                               float(loss.value(xp, backend.asarray(z_host, "float64"), t)))
    numeric = np.zeros_like(z_host)
    h = 1e-6
    for i in np.ndindex(z_host.shape):
        zp, zm = z_host.copy(), z_host.copy()
        zp[i] += h
        zm[i] -= h
        numeric[i] = (float(loss.value(xp, backend.asarray(zp, "float64"), t))
                      - float(loss.value(xp, backend.asarray(zm, "float64"), t))) / (2 * h)
    np.testing.assert_allclose(backend.to_numpy(delta), numeric, rtol=1e-6, atol=1e-9)


def test_binary_cross_entropy_matches_its_definition(backend):
    xp = backend.xp
    loss = F.loss_for_task("binary")
    z = np.array([[-2.0], [0.5], [3.0]])
    t = np.array([[0.0], [1.0], [1.0]])
    y = 1 / (1 + np.exp(-z))
    expected = -np.mean(t * np.log(y) + (1 - t) * np.log(1 - y))
    got = float(loss.value(xp, backend.asarray(z, "float64"), backend.asarray(t, "float64")))
    assert got == pytest.approx(expected, rel=1e-12)
    # no log(0) at huge logits
    big = backend.asarray(np.array([[1e4], [-1e4]]), "float32")
    tt = backend.asarray(np.array([[0.0], [1.0]]), "float32")
    assert float(loss.value(xp, big, tt)) == pytest.approx(1e4, rel=1e-6)


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown task"):
        F.loss_for_task("ranking")
