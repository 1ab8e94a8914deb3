"""A run's state is one value, a step is a function of it, a checkpoint is it serialised."""

import numpy as np
import pytest

from mlp_xp import MLP, Callback, TrainConfig, Trainer
from mlp_xp.backends import get_backend
from mlp_xp.data import scale_images
from mlp_xp.gpu import check
from mlp_xp.train import load_checkpoint, save_checkpoint
from mlp_xp.train.averaging import WeightAverage
from mlp_xp.train.state import TrainState
from mlp_xp.train.step import GenericStep

from .conftest import simulated_gpu

RECIPE = dict(epochs=2, batch_size=32, augment="affine", dropout=0.2, ema=0.99)


@pytest.fixture(scope="module")
def small(digits):
    return scale_images(digits.images[:256]), digits.labels[:256]


def _trainer(small, **settings):
    X, y = small
    model = MLP(784, (24,), 10, backend="cpu", seed=0)
    return Trainer(model, X, y, config=TrainConfig(**{**RECIPE, **settings}))


def test_a_step_is_a_function_of_the_state_and_the_plan_with_no_trainer(small):
    """A state built by hand and the generic step, driven as the loop drives them, reach
    exactly what the trainer's epoch reaches."""
    trainer = _trainer(small)
    model = MLP(784, (24,), 10, backend="cpu", seed=0)
    optimizer = type(trainer.optimizer)(model.params, model.backend, 0.08, momentum=0.9)
    state = TrainState(model, optimizer, WeightAverage(model, 0.99))
    step, plan = GenericStep(state, trainer.data), trainer.plan(0)
    step.begin_epoch(state, plan, 0)
    for s in range(plan.steps):
        before = state.counters()
        step(state, plan, s)
        assert state.counters() == before  # the step writes buffers, never the counters
        state.advance(plan, s)
        assert (state.t, state.lr, state.step) == (s + 1, plan.lrs[s], s + 1)
    step.end_epoch()
    trainer.run_epoch()
    for mine, theirs in zip(state.buffers(), trainer.train_state.buffers(), strict=True):
        np.testing.assert_array_equal(mine, theirs)  # parameters, velocity, average
    assert state.t == trainer.optimizer.t


def test_take_and_put_back_restore_every_part_in_place(small):
    trainer = _trainer(small)
    state = trainer.train_state
    trainer.run_epoch()
    snapshot, live = state.take(), state.buffers()
    copies = [b.copy() for b in live]
    counters = state.counters()
    trainer.run_epoch()
    assert state.counters() != counters
    state.put_back(snapshot)
    assert state.counters() == counters
    for before, now, buffer in zip(copies, state.buffers(), live, strict=True):
        assert now is buffer  # in place: a captured graph keeps pointing at them
        np.testing.assert_array_equal(now, before)


def test_a_checkpoint_is_the_state_serialised_and_comes_back_whole(small, tmp_path):
    trainer = _trainer(small, optimizer="adam", lr=1e-3, momentum=None)
    trainer.callbacks.append(_StopAfter(5))
    trainer.run()
    path = save_checkpoint(tmp_path / "run.npz", trainer)
    ckpt = load_checkpoint(path)
    resumed = Trainer(ckpt.model, *small, config=ckpt.config)
    resumed.restore(ckpt.optimizer, ckpt.state)
    a, b = trainer.train_state, resumed.train_state
    assert a.counters() == b.counters() and b.step == 5 and b.t == 5
    for mine, theirs in zip(a.buffers(), b.buffers(), strict=True):
        np.testing.assert_array_equal(mine, theirs)  # parameters, Adam's moments, average


class _StopAfter(Callback):
    def __init__(self, steps):
        self.steps = steps

    def on_step(self, trainer, step):
        if step == self.steps:
            trainer.request_stop()


@pytest.mark.parametrize(
    "change",
    [
        dict(dropout=0.3),  # baked into the fused kernels
        dict(momentum=0.8),
        dict(ema=0.999),
        dict(augment="elastic"),
        dict(batch_size=64),
    ],
)
def test_the_fast_step_verdict_is_keyed_on_every_setting_the_step_reads(small, change):
    """A verdict was keyed on whether dropout, momentum and the average were on, not on
    their values: a failure at one dropout rate refused the fast step at every other."""
    one, other = _trainer(small), _trainer(small, **change)
    assert check.signature(one.train_state, one.data) != check.signature(
        other.train_state, other.data
    )
    same = _trainer(small)
    assert check.signature(one.train_state, one.data) == check.signature(
        same.train_state, same.data
    )


def test_the_fast_step_runs_the_generic_steps_layer_loop_with_fused_operations(
    request, small, monkeypatch
):
    """One chain rule (mlp_xp.backprop): the fast step overrides its operations, it holds
    no layer loop of its own; the self-check runs both (on the CuPy double)."""
    from mlp_xp import backprop

    simulated_gpu(request)

    seen = []

    def counted(ops, n_layers):
        seen.append((type(ops).__name__, n_layers))
        return backprop.backprop(ops, n_layers)

    monkeypatch.setattr("mlp_xp.gpu.fast.backprop", counted)
    monkeypatch.setattr("mlp_xp.model.backprop", counted)
    model = MLP(784, (24, 16), 10, backend=get_backend("gpu"), seed=0)
    config = TrainConfig(epochs=1, batch_size=32, gpu_step="fast", dropout=0.2)
    trainer = Trainer(model, *small, config=config)
    trainer.run()
    assert trainer.runner.name == "fast"
    assert {("FastStep", 3), ("LayerOps", 3)} <= set(seen)
    assert seen.count(("FastStep", 3)) >= small[0].shape[0] // 32  # every full step
