"""The CuPy fast step on the double: the same training as the generic step, a self-check
that catches a wrong kernel or a CUDA error and falls back, and ``--gpu-step``."""

import warnings

import numpy as np
import pytest

from mlp_xp import MLP, Callback, TrainConfig, Trainer, load_checkpoint, save_checkpoint
from mlp_xp.backends import get_backend
from mlp_xp.cli import main
from mlp_xp.errors import ConfigError, DeviceError
from mlp_xp.gpu import VERDICTS, check, kernels

from .conftest import simulated_gpu


@pytest.fixture
def gpu(request):
    simulated_gpu(request)
    return get_backend("gpu")


@pytest.fixture(scope="module")
def data(digits):
    X = (digits.images[:700] / 255.0).reshape(-1, 784).astype(np.float32)
    return X, digits.labels[:700]  # 5 batches of 128 and one of 60


def train(backend, data, gpu_step="auto", epochs=2, trainer_out=None, **recipe):
    model = MLP(784, (64, 32), 10, backend=backend, l2=1e-4, seed=0)
    cfg = TrainConfig(epochs=epochs, batch_size=128, gpu_step=gpu_step, **recipe)
    trainer = Trainer(model, *data, config=cfg)
    history = trainer.run()
    if trainer_out is not None:
        trainer_out.append(trainer)
    return history, model.params_numpy(), trainer.runner.name


RECIPES = [
    {},
    {"augment": "elastic", "dropout": 0.3},
    {"augment": "shift", "optimizer": "sgd"},
    {"augment": "none", "optimizer": "adam", "lr": 1e-3, "schedule": "onecycle"},
]


@pytest.mark.parametrize("recipe", RECIPES, ids=["default", "elastic-dropout", "sgd", "adam"])
def test_the_fast_step_trains_like_the_generic_step(gpu, data, recipe):
    (h_fast, p_fast, kind), (h_gen, p_gen, _) = (
        train(gpu, data, step, **recipe) for step in ("fast", "generic")
    )
    assert kind == "fast"
    np.testing.assert_allclose(h_fast.train_loss, h_gen.train_loss, rtol=1e-5)
    for k, v in p_gen.items():
        np.testing.assert_allclose(p_fast[k], v, rtol=1e-4, atol=1e-6, err_msg=k)


def test_a_fast_run_interrupted_mid_epoch_resumes_bit_for_bit(gpu, data, tmp_path):
    _, whole, _ = train(gpu, data, "fast", epochs=2, augment="elastic", dropout=0.2)
    model = MLP(784, (64, 32), 10, backend=gpu, l2=1e-4, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=128, gpu_step="fast", augment="elastic", dropout=0.2)

    class StopInEpoch2(Callback):
        def on_step(self, trainer, step):
            if trainer.epoch == 1 and step == 3:
                trainer.request_stop()

    first = Trainer(model, *data, config=cfg, callbacks=[StopInEpoch2()])
    assert first.run().interrupted and (first.epoch, first.step) == (1, 3)
    save_checkpoint(tmp_path / "c.npz", first)
    ckpt = load_checkpoint(tmp_path / "c.npz", gpu)
    resumed = Trainer(ckpt.model, *data, config=ckpt.config)
    resumed.restore(ckpt.optimizer, ckpt.state)
    resumed.run()
    assert resumed.runner.name == "fast"
    for k, v in whole.items():
        np.testing.assert_array_equal(ckpt.model.params_numpy()[k], v, err_msg=k)


@pytest.fixture
def wrong_bias(monkeypatch):
    """A deliberately wrong fused kernel: the output layer's bias is added twice."""
    real = kernels.Kernels.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        add = self.add_bias
        self.add_bias = lambda z, b: (add(z, b), add(z, b))

    monkeypatch.setattr(kernels.Kernels, "__init__", init)


def test_a_wrong_kernel_is_caught_and_the_run_falls_back_to_the_generic_step(
    gpu, data, wrong_bias, monkeypatch
):
    _, reference, _ = train(gpu, data, "generic")
    with pytest.warns(UserWarning, match="fast GPU step is not used.*did not match") as caught:
        _, params, kind = train(gpu, data, "auto")
    assert kind == "generic" and len(caught) == 1
    for k, v in reference.items():  # the check left no trace: exactly the generic run
        np.testing.assert_array_equal(params[k], v, err_msg=k)
    assert any(VERDICTS.values())
    monkeypatch.setattr(
        check, "compare_steps", None
    )  # remembered: the next run does not check again
    with pytest.warns(UserWarning, match="did not match"):
        assert train(gpu, data, "auto", epochs=1)[2] == "generic"


def test_a_wrong_average_kernel_is_caught_and_leaves_no_trace(gpu, data, monkeypatch):
    """The weights' moving average is updated inside the fast step: the check compares it
    too, and restores it (and everything else) after trying the fast step."""
    real = kernels.Kernels.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        average = self.average
        self.average = lambda avg, p, w: average(avg, p, w * 2)

    _, reference, _ = train(gpu, data, "generic")
    monkeypatch.setattr(kernels.Kernels, "__init__", init)
    with pytest.warns(UserWarning, match="did not match"):
        _, params, kind = train(gpu, data, "auto")
    assert kind == "generic"
    for k, v in reference.items():
        np.testing.assert_array_equal(params[k], v, err_msg=k)


def test_a_wrong_kernel_with_gpu_step_fast_is_an_error(gpu, data, wrong_bias):
    with pytest.raises(DeviceError, match="did not match the generic step"):
        train(gpu, data, "fast")


def test_a_cuda_error_in_the_fast_step_falls_back(gpu, data, monkeypatch):
    from mlp_xp.gpu import fast

    def broken(self):
        raise RuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered")

    monkeypatch.setattr(fast.FastStep, "body", broken)
    with pytest.warns(UserWarning, match="it failed .*IllegalAddress"):
        assert train(gpu, data, "auto", epochs=1)[2] == "generic"


def test_the_cli_warns_in_one_line_and_trains_on(request, tmp_path, wrong_bias, capsys):
    simulated_gpu(request)
    argv = f"train --device gpu --epochs 1 --quiet --out {tmp_path / 'm.npz'}"
    assert main(argv.split()) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "warning" in line] == [
        next(line for line in err if line.startswith("mlp-xp: warning: the fast GPU step"))
    ]
    assert main([*argv.split(), "--gpu-step", "fast"]) == 2
    assert "error: the fast GPU step is not used" in capsys.readouterr().err


def test_configurations_without_fused_kernels_use_the_generic_step(gpu, data):
    model = MLP(784, "maxout:32:2", 10, backend=gpu, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = Trainer(model, *data, config=TrainConfig(epochs=1, batch_size=128))
        trainer.run()
    assert trainer.runner.name == "generic"
    fast = Trainer(model, *data, config=TrainConfig(epochs=1, batch_size=128, gpu_step="fast"))
    with pytest.raises(ConfigError, match="maxout layers have no fused kernels"):
        fast.run()


def test_gpu_step_fast_needs_a_gpu_and_the_flag_is_checked(digits, capsys):
    with pytest.raises(ConfigError, match="gpu_step='fast' needs a CuPy"):
        Trainer(
            MLP(backend="cpu"),
            np.zeros((4, 784)),
            np.zeros(4, int),
            config=TrainConfig(gpu_step="fast"),
        )
    assert main("train --gpu-step turbo".split()) == 2
    assert "gpu step must be one of auto, generic, fast, graph, got 'turbo'" in (
        capsys.readouterr().err
    )


def test_the_check_compares_within_float32_rounding(gpu, data):
    """The tolerance is tight: the two steps differ by rounding only (~1e-6 here)."""
    trainers = []
    train(gpu, data, "fast", epochs=1, trainer_out=trainers)
    t = trainers[0]
    assert check.TOLERANCE["float32"] < 1e-2
    assert check.compare_steps(t.train_state, t.runner.generic, t.runner, t.plan(0)) == ("", "")


def test_uint8_pixels_go_to_the_generic_step_and_leave_no_verdict_behind(gpu, digits):
    """pixels= was taken for a device fault: the fast step failed on uint8 inputs and the
    failure was remembered for the process, so a later float run lost the fast step too."""
    from mlp_xp.data import DIGITS

    VERDICTS.clear()
    images, labels = digits.images[:700].reshape(-1, 784), digits.labels[:700]
    model = MLP(784, (64, 32), 10, backend=gpu, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=128, augment="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fast GPU step is not used" warning
        trainer = Trainer(model, images, labels, config=cfg, pixels=DIGITS)
        trainer.run()
    assert trainer.runner.name.startswith("generic") and not VERDICTS
    floats = (images / 255.0).astype(np.float32)
    assert train(gpu, (floats, labels), epochs=1)[2] == "fast"
    with pytest.raises(ConfigError, match="uint8 pixels"):
        Trainer(model, images, labels, config=TrainConfig(gpu_step="fast"), pixels=DIGITS).run()


def test_the_fast_step_runs_on_a_second_gpu(request, data):
    """On gpu:1 everything it makes, its capture stream included, belongs to GPU 1 (CuPy
    refuses a stream of another device, and so does the double)."""
    simulated_gpu(request)
    VERDICTS.clear()
    gpu1 = get_backend("gpu:1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainers: list = []
        _, _, kind = train(gpu1, data, "auto", epochs=1, trainer_out=trainers)
    assert kind == "fast" and trainers[0].runner.graph is None  # kernel by kernel
    with pytest.warns(UserWarning) as seen:  # asked for a graph: its capture stream is GPU 1's
        train(gpu1, data, "graph", epochs=1)
    [warning] = [str(w.message) for w in seen]
    assert "calling cuBLAS API during stream capture" in warning
    assert "does not match with the current device" not in warning


def test_asked_for_a_graph_cuda_refuses_it_and_the_fused_kernels_stay(gpu, data):
    """CuPy 14 refuses cuBLAS while a stream captures (the double cites its source): the
    graph is lost with one warning naming why, the kernel-by-kernel fast step is kept and
    trains as the generic step does."""
    VERDICTS.clear()
    trainers: list = []
    with pytest.warns(UserWarning, match="runs kernel by kernel .* cuBLAS API during stream"):
        history, params, kind = train(gpu, data, "graph", epochs=2, trainer_out=trainers)
    assert kind == "fast" and trainers[0].runner.graph is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once a process: no second warning
        assert train(gpu, data, "graph", epochs=1)[2] == "fast"
    h_gen, p_gen, _ = train(gpu, data, "generic", epochs=2)
    np.testing.assert_allclose(history.train_loss, h_gen.train_loss, rtol=1e-5)
    for k, v in p_gen.items():
        np.testing.assert_allclose(params[k], v, rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_fused_kernel_depends_on_how_python_scalars_are_typed(gpu, data, dtype):
    """CuPy's fusion types a Python scalar by its own type and takes the first loop that
    holds it (``where(hit, 1.0, 0.0)`` runs in float16; NumPy runs it in float64). The
    double runs every fused kernel CuPy's way and notes each operation whose loop differs
    from NumPy's: for every activation, optimizer, dropout and augmentation, none."""
    from .cupy_double import STATE

    X, y = data
    recipes = [
        ("relu", {}),
        *[(act, {"augment": "elastic", "dropout": 0.3, "optimizer": "adam", "lr": 1e-3})
          for act in ("sigmoid", "tanh", "softplus", "linear")],
        ("relu", {"augment": "shift", "optimizer": "sgd", "dropout": 0.2}),
    ]  # fmt: skip
    for activation, recipe in recipes:
        STATE.retyped.clear()
        model = MLP(784, (32,), 10, backend=gpu, activation=activation, dtype=dtype, seed=0)
        cfg = TrainConfig(epochs=1, batch_size=128, gpu_step="fast", **recipe)
        trainer = Trainer(model, X.astype(dtype), y, config=cfg)
        trainer.run()
        assert trainer.runner.name == "fast"
        assert STATE.retyped == [], (activation, recipe)


@pytest.mark.gpu
def test_real_cupy_loses_the_graph_to_cublas_and_keeps_the_fused_kernels_as_the_double_does(
    real_gpu, data
):
    """The twin of the test above: on CUDA, CuPy 14 refuses cuBLAS while a stream
    captures, so ``--gpu-step graph`` warns once, naming it, and trains kernel by kernel."""
    VERDICTS.clear()
    trainers: list = []
    with pytest.warns(UserWarning, match="runs kernel by kernel .* cuBLAS API during stream"):
        _, _, kind = train(real_gpu, data, "graph", epochs=1, trainer_out=trainers)
    assert kind == "fast" and trainers[0].runner.graph is None
