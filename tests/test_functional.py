"""Activations, output functions and losses: values, derivatives, stability."""

import numpy as np
import pytest

from mlp_xp import functional as F
from mlp_xp.errors import ConfigError

from .helpers import numeric_derivative, xp_assert_close, xp_assert_equal

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
    a = backend.put(host)
    out = act.fn(xp, a)
    xp_assert_close(out, REFERENCE[name](host), backend, rtol=1e-12, atol=1e-12)

    def host_fn(v):
        return backend.get(act.fn(xp, backend.put(v)))

    xp_assert_close(
        act.grad(xp, a, out), numeric_derivative(host_fn, host), backend, rtol=1e-6, atol=1e-8
    )
    dout = backend.put(np.linspace(0.5, 2.0, host.size))
    for backprop in (act.backprop, act.backprop_fused):  # the fused form: what GPU kernels use
        xp_assert_close(
            backprop(xp, a, out, dout),
            backend.get(dout) * numeric_derivative(host_fn, host),
            backend,
            rtol=1e-6,
            atol=1e-8,
        )


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "tanh", "relu", "linear"])
def test_activations_finite_at_extremes_in_float32(backend, name):
    xp = backend.xp
    a = backend.put(np.array([-1e4, -88.0, 0.0, 88.0, 1e4]), "float32")
    act = F.ACTIVATIONS[name]
    out = act.fn(xp, a)
    assert bool(xp.all(xp.isfinite(out))) and bool(xp.all(xp.isfinite(act.grad(xp, a, out))))
    assert out.dtype == xp.float32
    ends = xp.stack([out[0], out[2], out[4]])
    if name == "sigmoid":
        xp_assert_close(ends, np.array([0.0, 0.5, 1.0], np.float32), backend)
    if name == "softplus":
        xp_assert_close(ends, np.array([0.0, np.log(2.0), 1e4], np.float32), backend, rtol=1e-6)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ConfigError, match="activation must be one of linear, .*got 'swish'"):
        F.activation("swish")


def test_log_softmax_is_finite_for_huge_logits(backend):
    xp = backend.xp
    z = backend.put(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]]), "float32")
    logp = F.log_softmax(xp, z)
    assert bool(xp.all(xp.isfinite(logp)))
    xp_assert_close(logp[0, 0], np.float32(0.0), backend, atol=1e-6)
    xp_assert_close(xp.sum(xp.exp(logp), axis=1), np.ones(2, np.float32), backend, rtol=1e-6)


def test_one_hot_without_index_assignment(backend):
    labels = backend.put(np.array([2, 0, 1]), "int64")
    t = F.one_hot(backend.xp, labels, 3, backend.dtype("float32"))
    xp_assert_equal(t, np.eye(3, dtype=np.float32)[[2, 0, 1]], backend)


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
    t = loss.targets(xp, backend.put(draw(rng, 5)), k, backend.dtype("float64"))
    value, delta = loss.value_and_delta(xp, backend.put(z_host), t)
    xp_assert_close(value, loss.value(xp, backend.put(z_host), t), backend, rtol=1e-12)
    numeric = np.zeros_like(z_host)
    h = 1e-6
    for i in np.ndindex(z_host.shape):
        zp, zm = z_host.copy(), z_host.copy()
        zp[i] += h
        zm[i] -= h
        numeric[i] = (
            float(loss.value(xp, backend.put(zp), t)) - float(loss.value(xp, backend.put(zm), t))
        ) / (2 * h)
    xp_assert_close(delta, numeric, backend, rtol=1e-6, atol=1e-9)


def test_binary_cross_entropy_matches_its_definition(backend):
    xp = backend.xp
    loss = F.loss_for_task("binary")
    z = np.array([[-2.0], [0.5], [3.0]])
    t = np.array([[0.0], [1.0], [1.0]])
    y = 1 / (1 + np.exp(-z))
    expected = -np.mean(t * np.log(y) + (1 - t) * np.log(1 - y))
    xp_assert_close(
        loss.value(xp, backend.put(z), backend.put(t)), np.float64(expected), backend, rtol=1e-12
    )
    # no log(0) at huge logits
    big = backend.put(np.array([[1e4], [-1e4]]), "float32")
    tt = backend.put(np.array([[0.0], [1.0]]), "float32")
    xp_assert_close(loss.value(xp, big, tt), np.float32(1e4), backend, rtol=1e-6)


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ConfigError, match="task must be one of classify, binary, regress"):
        F.loss_for_task("ranking")
