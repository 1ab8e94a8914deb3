"""Memory budgets: sizes are judged from the description, before anything is allocated."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from mlp_xp import MLP, budget, fit
from mlp_xp.errors import ConfigError, MemoryBudgetError
from mlp_xp.optim import make_optimizer
from mlp_xp.train import TrainConfig


@pytest.mark.parametrize(
    ("hidden", "optimizer", "momentum", "slots"),
    [
        ((64, 32), "adam", None, 2),
        (("maxout:16:3", 8), "momentum", None, 1),
        ((20,), "sgd", None, 0),
        ((20,), "sgd", 0.5, 1),
    ],  # fmt: skip
)
def test_parameters_gradients_and_state_are_exactly_what_is_allocated(
    hidden, optimizer, momentum, slots
):
    model = MLP(784, hidden, 10, backend="cpu", dtype="float64")
    opt = make_optimizer(optimizer, model.params, model.backend, 0.01, momentum)
    X = np.random.default_rng(0).random((5, 784))
    _, grads = model.loss_and_grads(X, model.targets(np.arange(5)))
    est = budget.estimate(784, hidden, 10, dtype="float64", optimizer=optimizer, momentum=momentum)
    assert est.n_params == model.n_params
    assert est.parts["parameters"] == model.params.buffer.nbytes
    assert est.parts["gradients"] == grads.buffer.nbytes
    state = opt.state_dict()[1]
    assert est.parts["optimizer state"] == sum(a.nbytes for a in state.values())
    assert est.parts["optimizer state"] == slots * model.params.buffer.nbytes


@pytest.mark.parametrize(
    ("hidden", "optimizer", "ema"),
    [
        ((1000, 1000), "momentum", 0.99),
        ((1000, 1000), "sgd", 0.0),
        (("maxout:200:4", 500), "adam", 0.99),
    ],  # fmt: skip
)
def test_the_estimate_is_within_a_factor_of_what_training_really_takes(hidden, optimizer, ema):
    """The stated factor: the estimate lies between 0.75 and 1.5 times the peak of the
    memory NumPy allocated (traced) while the network is built and trained for an epoch."""
    rng = np.random.default_rng(0)
    X, y = rng.random((256, 784), dtype=np.float32), rng.integers(0, 10, 256)
    config = TrainConfig(batch_size=64, optimizer=optimizer, ema=ema, augment="none")
    tracemalloc.start()
    try:
        model = MLP(784, hidden, 10, backend="cpu")
        fit(model, X, y, epochs=1, batch_size=64, optimizer=optimizer, ema=ema, augment="none")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    est = budget.for_training(model, config, 256)
    assert 0.75 * peak <= est.total <= 1.5 * peak, (est.describe(), peak)


@pytest.fixture
def little_memory(monkeypatch):
    """The host has ``room[0]`` bytes available (set by the test)."""
    room = [10**9]
    monkeypatch.setattr(budget, "host_available", lambda: (room[0], "of host memory available"))
    return room


def test_a_network_that_cannot_fit_is_refused_before_a_weight_is_drawn(little_memory):
    little_memory[0] = 50 * 10**6
    with pytest.raises(MemoryBudgetError) as info:
        MLP(784, (100000, 100000), 10, backend="cpu")
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, MemoryError)
    assert "10,079,600,010 parameters" in message and "50.0 MB is of host memory" in message
    assert "use smaller hidden than 100000,100000" in message
    assert "100000x100000 weights (layer 2)" in message
    with pytest.raises(MemoryBudgetError, match="784x99999999999999999999 weights"):
        MLP(784, "99999999999999999999", 10, backend="cpu")


def test_fit_and_the_estimators_refuse_what_training_cannot_fit(little_memory):
    X = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
    y = np.arange(2000) % 10
    model = MLP(784, (300, 100), 10, backend="cpu")  # 1 MB of parameters: it fits
    little_memory[0] = 3 * 10**6  # training it (state, average, temporaries) does not
    with pytest.raises(MemoryBudgetError, match="parameters are the problem.*hidden"):
        fit(model, X, y, epochs=1)
    little_memory[0] = 20 * 10**6
    with pytest.raises(MemoryBudgetError, match="activations of one batch.*smaller batch_size"):
        fit(model, X, y, epochs=1, batch_size=2000, optimizer="sgd", ema=0.0)
    sklearn = pytest.importorskip("mlp_xp.sklearn")
    little_memory[0] = 2 * 10**6
    with pytest.raises(MemoryBudgetError, match="hidden"):
        sklearn.MLPClassifier(hidden_layer_sizes=(300, 100), max_iter=1).fit(X, y)


#: Runs the command under an address-space limit: the budget must refuse what cannot fit
#: (before this change the allocation failed, or the kernel killed the process).
_UNDER_A_LIMIT = """
import contextlib, io, json, resource, sys
limit = 3 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from mlp_xp.cli import main
for hidden in sys.argv[2:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "--hidden", hidden, "--out", sys.argv[1], "--epochs", "1"])
    print("RESULT", json.dumps([code, err.getvalue()]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux only")
def test_cli_sizes_that_cannot_fit_are_one_line_naming_hidden(tmp_path):
    sizes = ["30000,30000", "100000,100000", "maxout:300:1000000", "99999999999999999999"]
    out = tmp_path / "model.npz"
    run = subprocess.run(
        [sys.executable, "-c", _UNDER_A_LIMIT, str(out), *sizes],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    results = [line[7:] for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    for hidden, line in zip(sizes, results, strict=True):
        code, err = json.loads(line)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mlp-xp train: error: "), err
        assert "left under this process's address-space limit" in err
        assert f"use smaller --hidden than {hidden}" in err
        assert "--batch-size" not in err
    assert not out.exists()


def test_a_gpu_network_is_judged_against_its_own_gpus_free_memory(gpu_backend):
    with pytest.raises(MemoryBudgetError, match=r"is free on gpu:0 .*; the 10,079,600,010 param"):
        MLP(784, (100000, 100000), 10, backend=gpu_backend)
    model = MLP(784, (30,), 10, backend=gpu_backend)  # a small one is built as before
    assert model.n_params == budget.estimate(784, (30,), 10).n_params


def test_gpu_1_is_asked_for_its_own_free_memory(request):
    from .conftest import simulated_gpu

    simulated_gpu(request)
    from mlp_xp.backends import get_backend

    with pytest.raises(MemoryBudgetError, match="is free on gpu:1"):
        MLP(784, (100000, 100000), 10, backend=get_backend("gpu:1"))


def test_the_trainers_data_is_counted_as_it_sits_on_the_device(monkeypatch):
    """uint8 pixels were counted as floats and the held-out rows not at all."""
    from mlp_xp.data import Normalization
    from mlp_xp.train import Trainer

    seen = []
    monkeypatch.setattr(budget, "check", lambda estimate, *a, **k: seen.append(estimate))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (100, 784), dtype=np.uint8)
    y, config = rng.integers(0, 10, 100), TrainConfig(batch_size=50, augment="none", ema=0.0)
    Trainer(MLP(784, (8,), 10, seed=0), X, y, config=config, pixels=Normalization())
    Trainer(MLP(784, (8,), 10, seed=0), X / 255.0, y, X[:50] / 255.0, y[:50], config=config)
    pixels, floats = (e.parts["data"] for e in seen if e.parts.get("data"))  # the trainers
    targets = 10 * 4  # one-hot float32 targets a row
    assert pixels == 100 * (784 + targets)
    assert floats == 150 * (784 * 4 + targets)
