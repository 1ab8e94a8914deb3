"""The training loop on real digits: accuracy, schedules of work, guards."""

import signal

import numpy as np
import pytest

from mlp_xp import MLP, Callback, TrainConfig, Trainer, fit
from mlp_xp.data import scale_images, stratified_split
from mlp_xp.errors import ConfigError, DataError, DivergenceError


@pytest.fixture(scope="module")
def split(digits):
    train, val = stratified_split(digits.labels, 0.2, seed=0)
    X = scale_images(digits.images)
    return X[train], digits.labels[train], X[val], digits.labels[val]


def test_default_network_learns_real_digits(split):
    X, y, Xv, yv = split
    model = MLP(backend="cpu", seed=0, l2=1e-4)
    history = fit(
        model,
        X,
        y,
        Xv,
        yv,
        epochs=6,
        batch_size=128,
        optimizer="momentum",
        lr=0.05,
        seed=0,
        augment="none",
        schedule="constant",
    )
    assert history.val_accuracy[-1] >= 0.90
    assert history.train_loss[-1] < history.train_loss[0]
    assert len(history.seconds) == 6 and all(s > 0 for s in history.seconds)


@pytest.mark.parametrize("batch_size", [1, 16, 400])
def test_one_sample_minibatch_and_full_batch_descent_all_learn(split, batch_size):
    X, y, Xv, yv = split
    X, y = X[:400], y[:400]
    model = MLP(784, (32,), 10, backend="cpu", seed=0)
    lr = {1: 0.01, 16: 0.05, 400: 0.5}[batch_size]
    history = fit(
        model,
        X,
        y,
        epochs=3,
        batch_size=batch_size,
        optimizer="sgd",
        lr=lr,
        augment="none",
        schedule="constant",
    )
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]


def test_same_seed_same_run_and_different_seed_differs(split):
    X, y, *_ = split
    runs = []
    for seed in (0, 0, 1):
        model = MLP(784, (16,), 10, backend="cpu", seed=seed)
        runs.append(fit(model, X[:300], y[:300], epochs=2, batch_size=32, seed=seed).train_loss)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_divergence_stops_with_epoch_and_step_and_keeps_good_params(split):
    X, y, *_ = split
    model = MLP(784, (16,), 10, backend="cpu", seed=0)
    before = model.params_numpy()
    with pytest.raises(DivergenceError, match=r"epoch 1, step \d+.*lower learning rate") as err:
        fit(model, X[:256], y[:256], epochs=2, batch_size=32, optimizer="sgd", lr=1e30)
    assert err.value.epoch == 1 and err.value.step >= 1
    after = model.params_numpy()
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=0.0), "learning rate"),
        (dict(lr=-1.0), "learning rate"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch size"),
        (dict(optimizer="rmsprop"), "optimizer must be one of sgd, momentum, adam"),
        (dict(momentum=1.5), "momentum"),
        (dict(optimizer="adam", momentum=0.9), "not adam"),
        (dict(schedule="zigzag"), "schedule must be one of"),
        (dict(epochs=2.5), "epochs"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(bogus=1), "unknown training setting"),
    ],
)
def test_bad_training_settings_raise_config_errors(split, kwargs, match):
    X, y, *_ = split
    with pytest.raises(ConfigError, match=match):
        fit(MLP(784, (4,), 10, backend="cpu"), X[:20], y[:20], **{"batch_size": 10, **kwargs})


def test_batch_larger_than_dataset_is_clamped_with_a_warning(split):
    X, y, *_ = split
    with pytest.warns(UserWarning, match="using 20"):
        trainer = Trainer(
            MLP(784, (4,), 10, backend="cpu"),
            X[:20],
            y[:20],
            config=TrainConfig(epochs=1, batch_size=1000),
        )
    assert trainer.batch_size == 20 and trainer.steps_per_epoch == 1


@pytest.mark.parametrize(
    "model_dtype, data_dtype", [("float32", "float64"), ("float64", "float32")]
)
def test_the_training_set_takes_the_models_dtype_once(split, model_dtype, data_dtype):
    X, y, X_val, y_val = split
    model = MLP(784, (4,), 10, backend="cpu", dtype=model_dtype)
    trainer = Trainer(
        model, X[:50].astype(data_dtype), y[:50], X_val[:20].astype(data_dtype), y_val[:20],
        config=TrainConfig(epochs=1, batch_size=25, augment="none"),
    )  # fmt: skip
    assert trainer.X.dtype == trainer.X_val.dtype == np.dtype(model_dtype)
    assert trainer.T.dtype == np.dtype(model_dtype)
    E, grads = model.loss_and_grads(trainer.X[:25], trainer.T[:25])
    assert E.dtype == grads["W1"].dtype == np.dtype(model_dtype)  # no mixed-precision step


class _StepLosses(Callback):
    def __init__(self, stop_after=None):
        self.losses, self.stop_after = [], stop_after

    def on_step(self, trainer, step):
        self.losses.append(float(trainer.last_loss))
        if step == self.stop_after:
            trainer.request_stop()


def test_the_epoch_loss_weighs_each_batch_by_its_samples(split):
    X, y, *_ = split
    config = TrainConfig(epochs=1, batch_size=20, optimizer="sgd", lr=0.01, augment="none")
    steps = _StepLosses()
    history = Trainer(MLP(784, (8,), 10, backend="cpu"), X[:50], y[:50], config=config,
                      callbacks=[steps]).run()  # fmt: skip
    assert len(steps.losses) == 3  # batches of 20, 20 and 10 samples
    expected = np.average(steps.losses, weights=[20, 20, 10])
    assert history.train_loss == [pytest.approx(expected, rel=1e-6)]
    # an epoch resumed after its first step: its loss is still over all three batches
    first, rest = _StepLosses(stop_after=1), _StepLosses()
    model = MLP(784, (8,), 10, backend="cpu")
    stopped = Trainer(model, X[:50], y[:50], config=config, callbacks=[first])
    stopped.run()
    resumed = Trainer(model, X[:50], y[:50], config=config, callbacks=[rest])
    resumed.restore(stopped.optimizer.state_dict(), stopped.state())
    history = resumed.run()
    assert first.losses == steps.losses[:1] and rest.losses == steps.losses[1:]
    assert history.train_loss == [pytest.approx(expected, rel=1e-6)]


def test_nan_inputs_and_count_mismatch_are_data_errors(split):
    X, y, *_ = split
    bad = X[:10].copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit(MLP(784, (4,), 10, backend="cpu"), bad, y[:10], epochs=1)
    with pytest.raises(DataError, match="y have 9 rows but training inputs X have 10"):
        fit(MLP(784, (4,), 10, backend="cpu"), X[:10], y[:9], epochs=1)


def test_augmentation_on_non_image_inputs_is_refused():
    with pytest.raises(ConfigError, match="augment='none'"):
        fit(
            MLP(5, (4,), 2, backend="cpu"),
            np.zeros((8, 5)),
            np.zeros(8, int),
            epochs=1,
            batch_size=8,
            augment="affine",
        )
    # the default, auto, distorts nothing: arrays carry no provenance
    model = MLP(5, (4,), 2, backend="cpu")
    fit(model, np.zeros((8, 5)), np.zeros(8, int), epochs=1, batch_size=8)


class KeepParams(Callback):
    """Keeps a host copy of the parameters after every epoch."""

    def __init__(self):
        self.snapshots = []

    def on_epoch_end(self, trainer, record):
        self.snapshots.append(trainer.model.params_numpy())


def test_early_stopping_stops_and_restores_the_best_parameters(split):
    X, y, Xv, yv = split
    model = MLP(784, (32,), 10, backend="cpu", seed=0)
    keep = KeepParams()
    # a learning rate that overshoots after a few epochs makes later epochs worse
    history = fit(
        model,
        X[:500],
        y[:500],
        Xv[:300],
        yv[:300],
        epochs=40,
        batch_size=50,
        optimizer="sgd",
        lr=0.05,
        patience=2,
        ema=0.0,
        augment="none",
        schedule="constant",
        callbacks=[keep],
    )
    best = int(np.argmax(history.val_accuracy))
    assert history.best_epoch == history.epoch[best]
    if history.stopped_early:
        assert len(history.epoch) == history.best_epoch + 2
    final = model.params_numpy()
    for k, v in keep.snapshots[best].items():
        np.testing.assert_array_equal(final[k], v)


def test_early_stopping_on_a_regression_task_watches_the_held_out_mse(rng):
    x = rng.uniform(-3, 3, (300, 1))
    y = np.sin(2 * x) + rng.normal(0, 0.3, x.shape)  # noisy: held-out MSE turns up
    model = MLP(1, (64,), 1, task="regress", activation="tanh", backend="cpu", seed=0)
    keep = KeepParams()
    history = fit(
        model,
        x[:40],
        y[:40],
        x[40:],
        y[40:],
        epochs=300,
        batch_size=8,
        optimizer="adam",
        lr=0.02,
        patience=5,
        ema=0.0,
        augment="none",
        schedule="constant",
        callbacks=[keep],
    )
    assert history.stopped_early and history.val_accuracy == []
    best = int(np.argmin(history.val_mse))
    assert history.best_epoch == history.epoch[best] and len(history.epoch) == best + 1 + 5
    final = model.params_numpy()
    for k, v in keep.snapshots[best].items():
        np.testing.assert_array_equal(final[k], v)


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler in place, as in a program started from a terminal: a
    process a shell starts in the background begins with SIGINT ignored, and there
    Ctrl-C cannot reach it at all."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_run(X, y, inside_step: int, handler_check=None):
    """Train with Ctrl-C raised in the middle of step ``inside_step`` (1-based) of epoch 1."""
    model = MLP(784, (16,), 10, backend="cpu", seed=0)
    trainer = Trainer(model, X, y, config=TrainConfig(epochs=2, batch_size=20, augment="none"))
    update = trainer.optimizer.apply

    def update_with_ctrl_c(grads, t, lr):
        if trainer.epoch == 0 and trainer.step + 1 == inside_step:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C lands mid-step
        update(grads, t, lr)

    trainer.optimizer.apply = update_with_ctrl_c
    return trainer


def test_ctrl_c_raises_keyboard_interrupt_after_the_step_in_flight(split, python_sigint):
    X, y, *_ = split
    X, y = X[:200], y[:200]
    sigterm = signal.getsignal(signal.SIGTERM)
    trainer = _interrupt_run(X, y, inside_step=3)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert (trainer.epoch, trainer.step) == (0, 3) and trainer.history.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is sigterm  # never touched
    reference = MLP(784, (16,), 10, backend="cpu", seed=0)  # exactly three whole steps
    ref = Trainer(reference, X, y, config=TrainConfig(epochs=2, batch_size=20, augment="none"))

    class StopAfter3(Callback):
        def on_step(self, t, step):
            if step == 3:
                t.request_stop()

    ref.callbacks.append(StopAfter3())
    history = ref.run()
    assert history.interrupted and ref.step == 3
    for k, v in reference.params_numpy().items():
        np.testing.assert_array_equal(trainer.model.params_numpy()[k], v)


def test_after_ctrl_c_running_again_finishes_the_run_as_if_uninterrupted(split, python_sigint):
    X, y, *_ = split
    X, y = X[:200], y[:200]
    trainer = _interrupt_run(X, y, inside_step=3)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    history = trainer.run()  # the natural way on in a notebook: run again
    assert history.epoch == [1, 2] and not history.interrupted
    reference = MLP(784, (16,), 10, backend="cpu", seed=0)
    Trainer(reference, X, y, config=TrainConfig(epochs=2, batch_size=20, augment="none")).run()
    for k, v in reference.params_numpy().items():
        np.testing.assert_allclose(trainer.model.params_numpy()[k], v, rtol=1e-6, atol=1e-7)


def test_a_callers_sigint_handler_is_left_in_charge(split):
    X, y, *_ = split
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        trainer = _interrupt_run(X[:200], y[:200], inside_step=3)
        history = trainer.run()  # the caller's handler does not stop training
        assert calls == [signal.SIGINT] and len(history.epoch) == 2 and not history.interrupted
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_the_default_recipe_reaches_97_percent_on_the_default_split(split):
    X, y, Xv, yv = split
    model = MLP(backend="cpu", seed=0, l2=1e-4)
    # TrainConfig's defaults with what ``--augment auto`` picks for these digits: the recipe
    history = fit(model, X, y, Xv, yv, augment="affine")
    assert history.val_accuracy[-1] >= 0.97


def test_the_trainer_works_on_a_copy_of_the_callers_config(split):
    X, y, X_val, y_val = split
    config = TrainConfig(epochs=1, batch_size=256, augment="none")
    trainer = Trainer(MLP(784, (8,), 10, backend="cpu"), X[:512], y[:512], config=config)
    trainer.extend(3)
    assert len(trainer.run().epoch) == 3
    assert trainer.config.epochs == 3 and config.epochs == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the diverging epoch's overflows
def test_a_diverged_epoch_is_undone_whole_so_a_retry_at_a_lower_rate_trains(split):
    """Only the parameters used to come back: the velocity and the weights' average stayed
    non-finite and the position at the epoch's end, so a retry diverged at once."""
    X, y, *_ = split
    model = MLP(784, (16,), 10, backend="cpu", seed=0)
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, augment="none", ema=0.99)
    trainer = Trainer(model, X[::10], y[::10], config=config)  # every class; momentum 0.9
    trainer.run_epoch()  # a good first epoch
    start = [b.copy() for b in trainer.train_state.buffers()]
    t, step = trainer.optimizer.t, trainer.step
    trainer.base_lr = 1e30
    with pytest.raises(DivergenceError):
        trainer.run_epoch()
    for saved, live in zip(start, trainer.train_state.buffers(), strict=True):
        np.testing.assert_array_equal(live, saved)  # velocity and average included
    assert (trainer.optimizer.t, trainer.step, trainer.epoch) == (t, step, 1)
    trainer.base_lr = 0.01
    trainer.schedule = trainer._plan()
    assert trainer.run_epoch()
    assert all(np.all(np.isfinite(b)) for b in trainer.train_state.buffers())
