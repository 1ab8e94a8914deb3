"""The NumPy fast step does exactly the generic step's math."""

import numpy as np
import pytest

from mlp_xp import MLP, TrainConfig, Trainer
from mlp_xp.fastpath import NumpySGDStep
from mlp_xp.optim import SGD

CASES = [
    dict(hidden=(12, 8), activation="relu", task="classify", n_out=4, l2=1e-3, momentum=0.9),
    dict(hidden=(12, 8), activation="sigmoid,tanh", task="classify", n_out=4, l2=0.0,
         momentum=0.0),
    dict(hidden=(10,), activation="softplus", task="regress", n_out=2, l2=1e-2, momentum=0.5),
    dict(hidden=(10, 6), activation="linear,relu", task="binary", n_out=1, l2=1e-3,
         momentum=0.0),
]


def _targets(task, rng, n, k):
    if task == "classify":
        return rng.integers(0, k, n)
    if task == "binary":
        return rng.integers(0, 2, n)
    return rng.normal(size=(n, k))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['task']}-{c['activation']}")
def test_fast_step_matches_generic_step_by_step(case, rng):
    kw = dict(activation=case["activation"], task=case["task"], l2=case["l2"], backend="cpu",
              dtype="float64", seed=7)
    generic = MLP(9, case["hidden"], case["n_out"], **kw)
    fast = MLP(9, case["hidden"], case["n_out"], **kw)
    opt_g, opt_f = SGD(0.1, case["momentum"]), SGD(0.1, case["momentum"])
    step = NumpySGDStep(fast, opt_f)
    for size in (16, 16, 5, 16, 5):   # a partial batch too, and its own buffers
        X = rng.normal(size=(size, 9))
        T = generic.targets(_targets(case["task"], rng, size, case["n_out"]))
        E_g, grads = generic.loss_and_grads(X, T)
        opt_g.update_params(generic.params, grads)
        E_f = step(X, T)
        assert float(E_f) == pytest.approx(float(E_g), rel=1e-12)
    for k, v in generic.params_numpy().items():
        np.testing.assert_allclose(fast.params_numpy()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    for k, v in opt_g.velocity.items():
        np.testing.assert_allclose(opt_f.velocity[k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    assert opt_f.t == opt_g.t == 5


def test_trainer_uses_the_fast_step_only_where_it_applies():
    X, y = np.zeros((8, 784), np.float32), np.arange(8) % 10
    cfg = dict(epochs=1, batch_size=4, augment="none")

    def fast(model, **kw):
        return Trainer(model, X, y, config=TrainConfig(**{**cfg, **kw})).fast_step is not None

    assert fast(MLP(784, (8,), 10, backend="cpu"), optimizer="sgd")
    assert fast(MLP(784, (8,), 10, backend="cpu"), optimizer="momentum")
    assert not fast(MLP(784, (8,), 10, backend="cpu"), optimizer="adam")
    assert not fast(MLP(784, (8,), 10, backend="cpu"), dropout=0.2)
    assert not fast(MLP(784, "maxout:8:2", 10, backend="cpu"))
    assert not fast(MLP(784, (8,), 10, backend="array-api-strict"))
    assert not fast(MLP(784, (8,), 10, backend="cpu"), fast_path=False)


def test_training_with_and_without_the_fast_path_agrees(digits):
    X = (digits.images[::10] / 255.0).reshape(-1, 784).astype(np.float32)
    y = digits.labels[::10]
    runs = []
    for fast_path in (True, False):
        model = MLP(784, (64, 32), 10, backend="cpu", seed=1, l2=1e-4)
        trainer = Trainer(model, X, y, config=TrainConfig(
            epochs=3, batch_size=32, optimizer="sgd", momentum=0.9, lr=0.05, augment="affine",
            fast_path=fast_path))
        runs.append((trainer.run(), model.params_numpy()))
    (h_fast, p_fast), (h_gen, p_gen) = runs
    np.testing.assert_allclose(h_fast.train_loss, h_gen.train_loss, rtol=1e-4)
    for k in p_gen:
        np.testing.assert_allclose(p_fast[k], p_gen[k], rtol=1e-3, atol=1e-5, err_msg=k)
