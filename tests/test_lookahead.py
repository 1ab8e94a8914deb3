"""Inputs made a step ahead on a worker thread: the same numbers, on a core BLAS leaves free."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mlp_xp import MLP, TrainConfig, Trainer
from mlp_xp.data import scale_images
from mlp_xp.train import lookahead, step
from mlp_xp.train.augment import Augmenter

from .helpers import StopAt

CONFIG = dict(epochs=2, batch_size=50, augment="elastic", dropout=0.1, seed=4)


@pytest.fixture
def data(digits):
    return scale_images(digits.images[:600]), digits.labels[:600]


def _train(data, ahead: bool, monkeypatch, callbacks=(), **overrides):
    monkeypatch.setattr(step, "spare_core", lambda: ahead)
    model = MLP(784, (32,), 10, backend="cpu", seed=2)
    trainer = Trainer(model, *data, config=TrainConfig(**{**CONFIG, **overrides}))
    trainer.callbacks.extend(callbacks)
    trainer.run()
    return trainer, model.params_numpy()


def test_inputs_made_ahead_train_exactly_as_inputs_made_in_step(data, monkeypatch):
    threads = []
    made = step.GenericStep.inputs

    def inputs(self, s):
        threads.append(threading.current_thread().name)
        return made(self, s)

    monkeypatch.setattr(step.GenericStep, "inputs", inputs)
    _, plain = _train(data, False, monkeypatch)
    assert not any(name.startswith("mlp-xp-inputs") for name in threads)
    threads.clear()
    trainer, ahead = _train(data, True, monkeypatch)
    assert trainer.runner.lookahead is not None
    # every step but each epoch's first was made ahead, on the worker
    assert sum(name.startswith("mlp-xp-inputs") for name in threads) == 2 * (12 - 1)
    for a, b in zip(plain, ahead, strict=True):
        np.testing.assert_array_equal(a, b)


def test_inputs_of_neighbouring_steps_live_in_separate_buffers(data, monkeypatch):
    """What the worker writes for step s + 1 never lands where step s's inputs are."""
    trainer, _ = _train(data, True, monkeypatch, epochs=1)
    runner = trainer.runner
    runner.begin_epoch(trainer.train_state, trainer.plan(0))
    a, b, c = runner.inputs(0), runner.inputs(1), runner.inputs(2)
    assert not np.shares_memory(a, b) and not np.shares_memory(b, c)
    assert np.shares_memory(a, c)  # two sets, alternating
    runner.end_epoch()


def test_a_run_stopped_mid_epoch_and_resumed_with_inputs_made_ahead_is_unchanged(data, monkeypatch):
    _, whole = _train(data, True, monkeypatch)
    trainer, _ = _train(data, True, monkeypatch, callbacks=[StopAt(1, 5)])
    assert trainer.step == 5  # stopped with step 6's inputs made ahead and dropped
    trainer.callbacks.clear()
    trainer.run()
    for a, b in zip(whole, trainer.model.params_numpy(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_error_on_the_worker_is_raised_by_the_step(data, monkeypatch):
    calls = []
    distort = Augmenter.__call__

    def failing(self, batch, coefficients, backend, slot=0):
        calls.append(threading.current_thread().name)
        if len(calls) == 4:
            raise MemoryError("no room for the distorted batch")
        return distort(self, batch, coefficients, backend, slot)

    monkeypatch.setattr(Augmenter, "__call__", failing)
    with pytest.raises(MemoryError, match="no room for the distorted batch"):
        _train(data, True, monkeypatch)
    assert calls[3].startswith("mlp-xp-inputs")


@pytest.mark.parametrize(
    "env, cores, spare",
    [
        ({"OPENBLAS_NUM_THREADS": "1"}, 2, True),
        ({"OMP_NUM_THREADS": "2"}, 2, False),
        ({"MKL_NUM_THREADS": "3"}, 8, True),
        ({"MKL_NUM_THREADS": "3"}, 4, True),  # 3 BLAS threads and the worker
        ({}, 8, False),  # BLAS takes every core unless told otherwise
        ({"OPENBLAS_NUM_THREADS": "1"}, 1, False),
    ],
)
def test_a_core_is_spare_only_when_blas_threads_were_limited_below_the_cores(
    monkeypatch, env, cores, spare
):
    for name in lookahead.BLAS_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        lookahead.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False
    )
    assert lookahead.spare_core() is spare
    # as many ranks as cores, each with its BLAS threads and a worker: none is spare
    assert lookahead.spare_core(processes=cores) is False


def test_four_ranks_of_one_blas_thread_need_eight_cores_for_their_workers(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    for cores, spare in ((5, False), (7, False), (8, True)):
        monkeypatch.setattr(
            lookahead.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False
        )
        assert lookahead.spare_core(processes=4) is spare
