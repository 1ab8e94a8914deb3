"""The network: whole-model gradient checks, a hand-worked step, shapes, errors."""

import numpy as np
import pytest

from mlp_xp import MLP, get_backend
from mlp_xp.errors import BackendMismatchError, ConfigError, DataError
from mlp_xp.optim import SGD

from .helpers import numeric_grads, xp_assert_close, xp_assert_equal


def _batch(backend, model, rng, n=6):
    X = backend.put(rng.normal(size=(n, model.n_inputs)))
    if model.task == "classify":
        labels = rng.integers(0, model.n_outputs, n)
    elif model.task == "binary":
        labels = rng.integers(0, 2, n)
    else:
        labels = rng.normal(size=(n, model.n_outputs))
    return X, model.targets(backend.put(labels))


def _assert_off_kinks(model, X):
    """Central differences are only valid away from ReLU kinks and maxout ties."""
    xp, h = model.xp, X
    for layer in model.layers[:-1]:
        a = h @ layer.params["W"] + layer.params["b"]
        assert float(xp.min(xp.abs(a))) > 1e-4
        if layer.kind == "maxout":
            z = xp.reshape(a, (a.shape[0], layer.n_out, layer.pieces))
            top = xp.max(z, axis=2, keepdims=True)
            gap = xp.where(z == top, xp.inf, top - z)
            assert float(xp.min(gap)) > 1e-4
        h = layer.forward(h)


CASES = [
    dict(hidden=(5, 4), activation="relu", task="classify", n_out=3),
    dict(hidden=(5, 4), activation="sigmoid,tanh", task="classify", n_out=3),
    dict(hidden=(4,), activation="softplus", task="binary", n_out=1),
    dict(hidden=(4, 3), activation="linear,tanh", task="regress", n_out=2),
    dict(hidden="maxout:4:3,3", activation="relu", task="classify", n_out=3),
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c['task']}-{c['hidden']}-{c['activation']}"
)
def test_whole_network_gradients_match_central_differences(backend, case, rng):
    model = MLP(
        4,
        case["hidden"],
        case["n_out"],
        activation=case["activation"],
        task=case["task"],
        l2=0.01,
        backend=backend,
        dtype="float64",
        seed=3,
    )
    X, T = _batch(backend, model, rng)
    _assert_off_kinks(model, X)
    loss, grads = model.loss_and_grads(X, T)
    xp_assert_close(loss, model.loss_value(X, T), backend, rtol=1e-12)
    numeric = numeric_grads(model, X, T)
    assert set(grads) == set(numeric)
    for key in numeric:
        xp_assert_close(grads[key], numeric[key], backend, rtol=1e-5, atol=1e-8, err_msg=key)


def test_one_sgd_step_matches_numbers_worked_by_hand():
    """784-style math on a 2-2-2 net, worked on paper (ReLU, softmax, lambda=0.1, eta=0.5).

    x = [1, 2], W1 = [[1, 0], [0, 1]] -> a1 = [1, 2], x1 = relu = [1, 2]
    W2 = [[1, 0], [0, 0]] -> z = [1, 0], y = softmax = [e/(e+1), 1/(e+1)] = [0.731059, 0.268941]
    t = [0, 1]: delta2 = y - t = [0.731059, -0.731059]
    dE/dW2 = x1^T delta2 + 0.1 W2 = [[0.831059, -0.731059], [1.462117, -1.462117]]
    delta1 = delta2 W2^T * relu'(a1) = [0.731059, 0] ; dE/dW1 = x^T delta1 + 0.1 W1
           = [[0.831059, 0], [1.462117, 0.1]]
    """
    model = MLP(2, (2,), 2, l2=0.1, backend="cpu", dtype="float64")
    model.set_params(
        {
            "W1": np.eye(2),
            "b1": np.zeros(2),
            "W2": np.array([[1.0, 0.0], [0.0, 0.0]]),
            "b2": np.zeros(2),
        }
    )
    X = np.array([[1.0, 2.0]])
    T = model.targets(np.array([1]))
    loss, grads = model.loss_and_grads(X, T)
    y0 = np.e / (np.e + 1)
    assert float(loss) == pytest.approx(-np.log(1 - y0) + 0.05 * (2 + 1), rel=1e-12)
    np.testing.assert_allclose(grads["W2"], [[y0 + 0.1, -y0], [2 * y0, -2 * y0]], rtol=1e-12)
    np.testing.assert_allclose(grads["b2"], [y0, -y0], rtol=1e-12)
    np.testing.assert_allclose(grads["W1"], [[y0 + 0.1, 0.0], [2 * y0, 0.1]], rtol=1e-12)
    np.testing.assert_allclose(grads["b1"], [y0, 0.0], rtol=1e-12)
    SGD(model.params, model.backend, lr=0.5).update_params(grads)
    np.testing.assert_allclose(
        model.params["W2"], [[1 - 0.5 * (y0 + 0.1), 0.5 * y0], [-y0, y0]], rtol=1e-12
    )
    np.testing.assert_allclose(
        model.params["W1"], [[1 - 0.5 * (y0 + 0.1), 0.0], [-y0, 0.95]], rtol=1e-12
    )


def test_default_network_shape_and_xavier_init():
    model = MLP(backend="cpu", seed=0)
    assert model.layer_sizes == [784, 300, 100, 10]
    assert model.n_params == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    W1 = model.params["W1"]
    limit = np.sqrt(6 / (784 + 300))
    assert W1.dtype == np.float32 and np.abs(W1).max() <= limit
    assert np.abs(W1).max() > 0.99 * limit
    assert not np.any(model.params["b1"])


def test_predictions_have_the_right_shapes_and_sum_to_one(backend, rng):
    xp = backend.xp
    model = MLP(6, (5,), 3, backend=backend, seed=0)
    X = backend.put(rng.random((4, 6)), "float32")
    probs = model.predict_proba(X)
    xp_assert_close(xp.sum(probs, axis=1), np.ones(4, np.float32), backend, rtol=1e-5)
    xp_assert_equal(model.predict(X), xp.argmax(probs, axis=1), backend)


def test_an_array_of_another_device_is_a_clear_error_naming_both(rng):
    model = MLP(6, (5,), 3, backend="array-api-strict", seed=0)
    elsewhere = get_backend("array-api-strict:device1").put(rng.random((2, 6)))
    named = "array_api_strict array on .*device1.*array_api_strict"
    with pytest.raises(BackendMismatchError, match=named):
        model.predict(elsewhere)
    assert model.backend.owns(model.predict(rng.random((2, 6))))  # host data is moved


def test_wrong_feature_count_is_a_data_error(rng):
    model = MLP(6, (5,), 3, backend="cpu")
    with pytest.raises(DataError, match=r"expects \(N, 6\)"):
        model.predict(rng.random((2, 7)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden="300,0"), "a hidden layer size must be an integer >= 1, got 0"),
        (dict(hidden="300,abc"), "a hidden layer size must be an integer >= 1, got 'abc'"),
        (dict(hidden="maxout:30:1"), "pieces must be an integer >= 2, got 1"),
        (dict(hidden="maxout:30"), "maxout:UNITS:PIECES"),
        (dict(activation="swish"), "activation must be one of"),
        (dict(activation="relu,relu,relu"), "3 activations for 2 hidden"),
        (dict(task="binary"), "one output unit"),
        (dict(l2=-1.0), "l2 must be a finite number >= 0, got -1.0"),
        (dict(l2=float("nan")), "l2 must be"),
        (dict(dtype="float16"), "dtype must be one of float32, float64"),
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_network_settings_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MLP(784, kwargs.pop("hidden", (300, 100)), 10, backend="cpu", **kwargs)


def test_to_moves_a_model_between_backends(rng):
    model = MLP(6, "maxout:4:2,3", 3, backend="cpu", seed=1)
    model.meta["normalization"] = {"scale": 0.5}
    strict = model.to("array-api-strict")
    assert strict.backend.name == "array_api_strict" and strict.meta == model.meta
    X = rng.random((3, 6)).astype(np.float32)
    xp_assert_close(
        strict.forward(strict.backend.put(X)), model.forward(X), strict.backend, rtol=1e-6
    )


def test_set_params_writes_in_place_so_bound_arrays_see_it(backend, rng):
    model = MLP(4, (3,), 2, backend=backend, seed=0)
    bound = model.params
    new = {k: rng.normal(size=tuple(v.shape)).astype(np.float32) for k, v in bound.items()}
    model.set_params(new)
    for k, v in new.items():
        assert model.params[k] is bound[k]
        xp_assert_equal(bound[k], v, backend)


def test_maxout_ties_route_the_gradient_to_the_first_piece_only(backend):
    """Two pieces of a unit that tie share nothing: the first winner takes the gradient."""
    from mlp_xp.layers import Maxout

    xp = backend.xp
    # one input, one unit with three pieces: pieces 0 and 2 tie at 2.0, piece 1 is lower
    W = backend.put(np.array([[2.0, 1.0, 2.0]]))
    layer = Maxout(xp, W, backend.put(np.zeros(3)), pieces=3)
    out = layer.forward(backend.put(np.array([[1.0]])), train=True)
    xp_assert_equal(out, np.array([[2.0]]), backend)
    grads, dx = layer.backward(backend.put(np.array([[5.0]])))
    xp_assert_equal(grads["W"], np.array([[5.0, 0.0, 0.0]]), backend)
    xp_assert_equal(grads["b"], np.array([5.0, 0.0, 0.0]), backend)
    xp_assert_equal(dx, np.array([[10.0]]), backend)


@pytest.mark.parametrize("task, n_out", [("classify", 3), ("binary", 1), ("regress", 2)])
def test_evaluate_is_the_same_across_its_internal_batch_boundaries(backend, rng, task, n_out):
    model = MLP(5, (4,), n_out, task=task, l2=0.01, backend=backend, dtype="float64", seed=2)
    X = backend.put(rng.normal(size=(23, 5)))
    labels = {
        "classify": rng.integers(0, 3, 23),
        "binary": rng.integers(0, 2, 23),
        "regress": rng.normal(size=(23, 2)),
    }[task]
    labels = backend.put(labels)
    whole = model.evaluate(X, labels)
    for batch_size in (1, 5, 22, 23):  # uneven last batches, and a batch of exactly N
        parts = model.evaluate(X, labels, batch_size=batch_size)
        assert parts.keys() == whole.keys() and parts["samples"] == 23
        for key in whole:
            assert parts[key] == pytest.approx(whole[key], rel=1e-12), (batch_size, key)
    z = backend.get(model.logits(X))
    if task == "classify":
        assert whole["accuracy"] == np.mean(z.argmax(axis=1) == backend.get(labels))
    if task == "regress":
        assert whole["mse"] == pytest.approx(np.mean((z - backend.get(labels)) ** 2))
