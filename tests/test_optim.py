"""Optimizers: bound at construction, hand-worked steps, state on the device and in checkpoints."""

import numpy as np
import pytest

from mlp_xp import MLP, TrainConfig, Trainer, load_checkpoint, load_model, save_checkpoint
from mlp_xp.cli import main
from mlp_xp.data import load_digits, scale_images, stratified_split
from mlp_xp.errors import ConfigError, ModelFileError
from mlp_xp.optim import SGD, Adam, make_optimizer

from .helpers import idx_folder, xp_assert_close


def _params(backend):
    return {"W": backend.put(np.array([1.0, -2.0]))}


def test_momentum_steps_by_hand(backend):
    p = _params(backend)
    g = {"W": backend.put(np.array([0.5, 1.0]))}
    opt = SGD(p, backend, lr=0.1, momentum=0.9)
    assert backend.owns(opt.velocity["W"])  # state made at construction, on the device
    opt.update_params(g)  # v = -0.1 g = [-0.05, -0.1]
    opt.update_params(g)  # v = 0.9 v - 0.1 g = [-0.095, -0.19]
    xp_assert_close(p["W"], np.array([1 - 0.145, -2 - 0.29]), backend)


def test_plain_sgd_keeps_no_state_and_steps_by_the_rule(backend):
    p = _params(backend)
    opt = SGD(p, backend, lr=0.1)
    assert opt.momentum == 0.0 and opt.velocity == {} and opt.state_dict()[1] == {}
    opt.update_params({"W": backend.put(np.array([0.5, 1.0]))})
    xp_assert_close(p["W"], np.array([1 - 0.05, -2 - 0.1]), backend)


def test_adam_first_steps_by_hand(backend):
    p = _params(backend)
    g = {"W": backend.put(np.array([0.5, -4.0]))}
    opt = Adam(p, backend, lr=0.01)
    opt.update_params(g)  # bias-corrected m/sqrt(v) = sign(g) on the first step
    xp_assert_close(p["W"], np.array([1 - 0.01, -2 + 0.01]), backend, rtol=1e-6)
    opt.update_params(g)
    xp_assert_close(p["W"], np.array([1 - 0.02, -2 + 0.02]), backend, rtol=1e-6)


def test_make_optimizer_names_and_momentum_defaults():
    params = {"W": np.zeros(2)}
    cpu = MLP(2, (), 1, task="regress", backend="cpu").backend
    assert make_optimizer("sgd", params, cpu, 0.1).momentum == 0.0  # plain unless asked
    assert make_optimizer("sgd", params, cpu, 0.1, momentum=0.5).momentum == 0.5
    assert make_optimizer("momentum", params, cpu, 0.1).momentum == 0.9
    assert make_optimizer("momentum", params, cpu, 0.1, momentum=0.0).momentum == 0.0
    assert isinstance(make_optimizer("adam", params, cpu, 0.1), Adam)
    with pytest.raises(ConfigError, match="not adam"):
        make_optimizer("adam", params, cpu, 0.1, momentum=0.9)
    with pytest.raises(ConfigError, match="momentum must be a finite number in \\[0, 1\\)"):
        make_optimizer("sgd", params, cpu, 0.1, momentum=1.0)


def test_cli_optimizer_sgd_is_plain_gradient_descent_checked_by_hand(tmp_path, capsys):
    """One full-batch step of ``--optimizer sgd``: W <- W - eta (dE/dW + lambda W), by hand."""
    folder = idx_folder(tmp_path / "d", n=50)
    lr, l2, seed = 0.3, 0.01, 4
    assert (
        main(
            [
                *"train --data".split(),
                str(folder),
                *"--optimizer sgd --lr".split(),
                str(lr),
                "--l2",
                str(l2),
                *"--hidden 8 --epochs 1 --batch-size 40 --schedule constant --ema 0".split(),
                *"--augment none --seed".split(),
                str(seed),
                *"--device cpu --out".split(),
                str(tmp_path / "m.npz"),
                "--quiet",
            ]
        )
        == 0
    )
    digits = load_digits(folder)
    train, _ = stratified_split(digits.labels, 0.2, seed)
    x = scale_images(digits.images[train]).astype(np.float64)
    t = np.eye(10)[digits.labels[train]]
    p0 = {
        k: v.astype(np.float64)
        for k, v in MLP(784, (8,), 10, seed=seed, backend="cpu").params_numpy().items()
    }
    a1 = x @ p0["W1"] + p0["b1"]
    h = np.maximum(a1, 0)
    z = h @ p0["W2"] + p0["b2"]
    y = np.exp(z - z.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    d2 = (y - t) / len(x)  # delta(3) = y - t, averaged over the batch
    d1 = (d2 @ p0["W2"].T) * (a1 > 0)
    grads = {
        "W2": h.T @ d2 + l2 * p0["W2"],
        "b2": d2.sum(0),
        "W1": x.T @ d1 + l2 * p0["W1"],
        "b1": d1.sum(0),
    }
    trained = load_model(tmp_path / "m.npz", "cpu")
    for k, g in grads.items():
        np.testing.assert_allclose(
            trained.params_numpy()[k], p0[k] - lr * g, rtol=1e-4, atol=1e-6, err_msg=k
        )
    assert trained.meta["training"]["optimizer"] == {"name": "sgd", "momentum": 0.0, "lr": lr}


@pytest.mark.parametrize(
    "flags, momentum",
    [
        ("--optimizer sgd --momentum 0.5".split(), 0.5),
        (["--optimizer", "momentum"], 0.9),
    ],
)
def test_the_model_file_and_run_log_record_the_momentum_used(tmp_path, flags, momentum):
    import json

    folder = idx_folder(tmp_path / "d", n=30)
    assert (
        main(
            [
                *"train --data".split(),
                str(folder),
                *flags,
                *"--hidden 4 --epochs 1 --augment none --device cpu --run-dir".split(),
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
        == 0
    )
    used = load_model(tmp_path / "run" / "model.npz", "cpu").meta["training"]["optimizer"]
    logged = json.loads((tmp_path / "run" / "history.json").read_text())["optimizer"]
    expected = {"name": "sgd", "momentum": momentum, "lr": 0.08}  # both are the SGD class
    assert used == logged == expected


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_optimizer_state_round_trips_through_a_checkpoint(tmp_path, name, rng):
    model = MLP(784, (4,), 10, backend="cpu", seed=0)
    X = rng.random((20, 784)).astype(np.float32)
    trainer = Trainer(
        model,
        X,
        np.arange(20) % 10,
        config=TrainConfig(epochs=1, batch_size=5, optimizer=name, lr=0.01, augment="none"),
    )
    trainer.run()
    save_checkpoint(tmp_path / "c.npz", trainer)
    ckpt = load_checkpoint(tmp_path / "c.npz", "array-api-strict")
    resumed = Trainer(ckpt.model, X, np.arange(20) % 10, config=ckpt.config)
    resumed.restore(ckpt.optimizer, ckpt.state)
    s1, a1 = trainer.optimizer.state_dict()
    s2, a2 = resumed.optimizer.state_dict()
    assert s1 == s2 and s2["t"] == 4 and set(a1) == set(a2) and a1
    for k in a1:
        xp_assert_close(a2[k], a1[k], resumed.backend)


def test_optimizer_state_of_another_optimizer_is_refused():
    model = MLP(4, (3,), 2, backend="cpu")
    sgd = SGD(model.params, model.backend, lr=0.1, momentum=0.9)
    adam = Adam(model.params, model.backend)
    with pytest.raises(ModelFileError, match="'adam' optimizer state, this run uses 'sgd'"):
        sgd.load_state_dict(*adam.state_dict())
