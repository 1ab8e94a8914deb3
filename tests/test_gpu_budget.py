"""What a training step asks of a GPU, counted on the CuPy double: the per-step budget.

A step of this small network takes microseconds of arithmetic on a GPU, so launches and
syncs are its whole cost. Budgets: no blocking sync and at most one host-to-device copy
per step for every recipe; the generic step of the default recipe at most 80 operations;
the fast step at most 30 launches kernel by kernel (a CUDA graph of it cannot be captured
on CuPy 14: cuBLAS refuses a capturing stream, and the double does too).
"""

import json

import numpy as np
import pytest

from mlp_xp import MLP, Callback, TrainConfig, Trainer
from mlp_xp.backends import get_backend
from mlp_xp.cli import main
from mlp_xp.gpu.fast import FastStep
from mlp_xp.train.step import GenericStep

from .conftest import simulated_gpu
from .cupy_double import STATE, counting

RECIPES = {
    "default": {},  # with the weight average (ema 0.99)
    "no average": {"ema": 0.0},
    "elastic": {"augment": "elastic"},
    "dropout": {"dropout": 0.2},
    "adam": {"optimizer": "adam", "lr": 1e-3},
}


@pytest.fixture
def gpu(request):
    simulated_gpu(request)
    return get_backend("gpu")


@pytest.fixture(scope="module")
def data():
    r = np.random.default_rng(0)
    return r.random((1000, 784), dtype=np.float32), r.integers(0, 10, 1000)


class PerStep(Callback):
    """The double's counts between consecutive steps (the first also holds the epoch start)."""

    def on_epoch_start(self, trainer, epoch, n_steps):
        self.rows, self.last = [], STATE.counts.copy()

    def on_step(self, trainer, step):
        now = STATE.counts.copy()
        self.rows.append(now - self.last)
        self.last = now


def run_counted(backend, data, gpu_step, **recipe):
    X, y = data
    model = MLP(backend=backend, l2=1e-4, seed=0)
    counts = PerStep()
    cfg = TrainConfig(epochs=2, batch_size=128, gpu_step=gpu_step, **recipe)
    trainer = Trainer(model, X, y, config=cfg, callbacks=[counts])
    trainer.run()
    return trainer, counts.rows  # the second epoch's steps: 7 full ones, then 104 samples


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_generic_step_never_waits_for_the_gpu_and_copies_nothing_per_step(gpu, data, recipe):
    trainer, rows = run_counted(gpu, data, "generic", **RECIPES[recipe])
    assert trainer.runner.name == "generic"
    for step in rows[1:]:
        assert step.syncs == 0 and step.h2d == 0, step
    assert rows[0].syncs <= 1 and rows[0].h2d <= 2  # the epoch's plan: order, coefficients
    if recipe == "default":
        assert max(step.launches for step in rows) <= 80  # 73 today with the average (119 before)


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_fast_step_is_at_most_30_launches_a_step_with_no_sync_or_copy(gpu, data, recipe):
    trainer, rows = run_counted(gpu, data, "fast", **RECIPES[recipe])
    assert trainer.runner.name == "fast" and trainer.runner.graph is None  # kernel by kernel
    for step in rows[1:7]:  # the full batches (the average's update among the kernels)
        assert step.launches <= 30 and (step.graph_launches, step.syncs, step.h2d) == (0, 0, 0)
    assert rows[7].syncs == 0 and rows[7].h2d == 0  # the smaller last batch: the generic step
    assert rows[0].syncs <= 1 and rows[0].h2d <= 3


@pytest.mark.parametrize("recipe", [*RECIPES, "none"])
def test_the_fast_step_kernel_by_kernel_is_at_most_30_launches_and_allocates_nothing(
    gpu, data, recipe
):
    X, y = (a[:896] for a in data)  # 7 full batches
    model = MLP(backend=gpu, l2=1e-4, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=128, **RECIPES.get(recipe, {"augment": "none"}))
    trainer = Trainer(model, X, y, config=cfg)
    state, data = trainer.train_state, trainer.data
    fast = FastStep(state, data, GenericStep(state, data))
    with counting() as epoch:
        fast.begin_epoch(state, trainer.plan(0), 0)
    assert epoch.counts.h2d == 1  # the whole epoch plan in one copy
    fast.body()
    with counting() as step:
        fast.body()
    assert step.counts.launches <= 30 and step.counts.syncs == 0 and step.counts.h2d == 0
    assert sum(step.counts.allocations.values()) == 0  # every buffer was made in advance
    refused = pytest.raises(NotImplementedError, match="cuBLAS API during stream capture")
    with counting() as captured, refused:
        fast.capture()  # as CuPy 14 on CUDA: the step stays kernel by kernel
    assert sum(captured.counts.allocations.values()) == 0
    assert captured.counts.capture_allocations == 0


def _fast_step(backend, data, recipe):
    X, y = (a[:896] for a in data)  # 7 full batches
    model = MLP(backend=backend, l2=1e-4, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=128, **RECIPES.get(recipe, {"augment": "none"}))
    trainer = Trainer(model, X, y, config=cfg)
    generic = GenericStep(model, trainer.optimizer, trainer.X, trainer.T, trainer.augmenter)
    fast = FastStep(trainer, generic)
    fast.begin_epoch(trainer.plan(0), 0)
    return fast


@pytest.mark.gpu
@pytest.mark.parametrize("recipe", [*RECIPES, "none"])
def test_real_cupy_fast_step_allocates_nothing_never_syncs_and_cannot_be_captured(
    real_gpu, data, recipe
):
    """The twin of the test above on real CuPy: no block taken from the pool in a step or
    in the attempted capture (``cupy.cuda.MemoryHook``), no wait for the device
    (``cupyx.allow_synchronize``), cuBLAS refusing the capture with the double's text,
    and no stream left capturing (``Stream.is_capturing``)."""
    from .test_gpu import memory_log, no_sync

    cupy = real_gpu.cupy
    fast = _fast_step(real_gpu, data, recipe)
    with real_gpu.scope():
        fast.body()  # the first step compiles the kernels and makes cuBLAS's handle
        with memory_log(cupy) as log, no_sync(cupy):
            fast.body()
            fast.body()
        assert log.mallocs == []
        refused = pytest.raises(NotImplementedError, match="cuBLAS API during stream capture")
        with memory_log(cupy) as log, refused:
            fast.capture()
        assert log.mallocs == [] and fast.graph is None
        assert not cupy.cuda.get_current_stream().is_capturing()
        fast.body()  # the failed capture left the device usable
        cupy.cuda.Device().synchronize()


class NoSyncInSteps(Callback):
    """On real CuPy: no wait for the device between the first and the seventh step's end
    (the double's ``rows[1:7]``); a wait raises ``cupyx.DeviceSynchronized`` in the run."""

    def __init__(self, cupy):
        from .test_gpu import no_sync

        self.block, self.cupy, self.no_sync = None, cupy, no_sync

    def on_step(self, trainer, step):
        if trainer.epoch == 1 and step == 0:
            self.block = self.no_sync(self.cupy)
            self.block.__enter__()
        elif self.block is not None and step == 6:
            self.block.__exit__(None, None, None)
            self.block = None


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_step", ["generic", "fast"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_real_cupy_steps_never_wait_for_the_device_as_the_double_counts(
    real_gpu, data, recipe, gpu_step
):
    X, y = data
    model = MLP(backend=real_gpu, l2=1e-4, seed=0)
    watch = NoSyncInSteps(real_gpu.cupy)
    cfg = TrainConfig(epochs=2, batch_size=128, gpu_step=gpu_step, **RECIPES[recipe])
    trainer = Trainer(model, X, y, config=cfg, callbacks=[watch])
    try:
        trainer.run()
    finally:
        if watch.block is not None:  # a failed run: let this thread synchronize again
            watch.block.__exit__(None, None, None)
    assert trainer.runner.name == gpu_step and watch.block is None


def test_bench_json_reports_the_counted_figures(request, capsys):
    simulated_gpu(request)
    argv = "bench --devices gpu --samples 1024 --batch-sizes 128 --repeats 1 --json"
    assert main([*argv.split(), "--no-augment-cost"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    counted = {(r["step"], r["recipe"]): r["per_step"] for r in result["counted"]}
    assert set(counted) == {
        (step, recipe)
        for step in ("generic", "fast")
        for recipe in ("affine", "elastic", "dropout", "adam", "none")
    }
    assert counted["generic", "affine"]["launches"] <= 80
    for (step, _), figures in counted.items():
        assert figures["syncs"] == 0 and figures["h2d"] == 0
        if step == "fast":
            assert figures["launches"] <= 30 and figures["graph_launches"] == 0
    assert [r["step"] for r in result["results"]] == ["fast"]


def test_bench_on_a_backend_that_cannot_count_reports_no_figures(capsys):
    argv = "bench --devices cpu --samples 256 --batch-sizes 128 --repeats 1 --json"
    assert main([*argv.split(), "--no-augment-cost"]) == 0
    assert "counted" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
