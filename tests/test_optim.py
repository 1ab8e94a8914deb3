"""Optimizers: hand-worked steps, state on the device, and state in checkpoints."""

import numpy as np
import pytest

from mlp_xp import MLP, load_checkpoint, save_checkpoint
from mlp_xp.optim import SGD, Adam, make_optimizer


def _params(backend):
    return {"W": backend.asarray(np.array([1.0, -2.0]), "float64")}


def test_momentum_steps_by_hand(backend):
    p = _params(backend)
    g = {"W": backend.asarray(np.array([0.5, 1.0]), "float64")}
    opt = SGD(lr=0.1, momentum=0.9)
    opt.update_params(p, g)            # v = -0.1 g = [-0.05, -0.1]
    opt.update_params(p, g)            # v = 0.9 v - 0.1 g = [-0.095, -0.19]
    np.testing.assert_allclose(backend.to_numpy(p["W"]), [1 - 0.145, -2 - 0.29])
    assert backend.owns(opt.velocity["W"])


def test_adam_first_steps_by_hand(backend):
    p = _params(backend)
    g = {"W": backend.asarray(np.array([0.5, -4.0]), "float64")}
    opt = Adam(lr=0.01)
    opt.update_params(p, g)  # bias-corrected m/sqrt(v) = sign(g) on the first step
    np.testing.assert_allclose(backend.to_numpy(p["W"]), [1 - 0.01, -2 + 0.01], rtol=1e-6)
    opt.update_params(p, g)
    np.testing.assert_allclose(backend.to_numpy(p["W"]), [1 - 0.02, -2 + 0.02], rtol=1e-6)


def test_make_optimizer_names():
    assert make_optimizer("sgd", 0.1, 0.0).momentum == 0.0
    assert make_optimizer("momentum", 0.1, 0.0).momentum == 0.9
    assert isinstance(make_optimizer("adam", 0.1), Adam)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_optimizer_state_round_trips_through_a_checkpoint(tmp_path, name, rng):
    model = MLP(6, (4,), 3, backend="cpu", seed=0)
    opt = make_optimizer(name, 0.01)
    X = rng.random((5, 6)).astype(np.float32)
    _, grads = model.loss_and_grads(X, model.targets(np.array([0, 1, 2, 0, 1])))
    opt.update_params(model.params, grads)
    save_checkpoint(tmp_path / "c.npz", model, opt, {"epoch": 1, "step": 0})
    model2, scalars, arrays, state = load_checkpoint(tmp_path / "c.npz", "array-api-strict")
    opt2 = make_optimizer(name, 0.5)
    opt2.load_state_dict(scalars, arrays, model2.backend)
    assert opt2.lr == 0.01 and opt2.t == 1 and state["epoch"] == 1
    s1, a1 = opt.state_dict()
    s2, a2 = opt2.state_dict()
    assert s1 == s2 and set(a1) == set(a2)
    for k in a1:
        np.testing.assert_array_equal(model2.backend.to_numpy(a2[k]), a1[k])
