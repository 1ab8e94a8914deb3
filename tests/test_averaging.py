"""Weight averaging (TrainConfig.ema): the moving average replaces the trained weights."""

from __future__ import annotations

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.train import Callback, TrainConfig, Trainer, load_checkpoint, save_checkpoint

from .helpers import StopAt, xp_assert_close


class _Record(Callback):
    """The flat parameters after every step, as host arrays."""

    def __init__(self):
        self.after = []

    def on_step(self, trainer, step):
        self.after.append(trainer.backend.get(trainer.model.params.buffer).astype(np.float64))


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 12)), rng.integers(0, 3, n)


def _trainer(backend, callbacks=(), epochs=3, decay=0.9, schedule="constant"):
    X, y = _data()
    model = MLP(12, (8,), 3, backend=backend, dtype="float64", seed=0)
    config = TrainConfig(epochs=epochs, batch_size=32, lr=0.1, ema=decay, schedule=schedule)
    return Trainer(model, X, y, config=config, callbacks=list(callbacks), image_shape=None)


def test_the_average_is_the_textbook_one_and_replaces_the_weights(backend):
    record = _Record()
    trainer = _trainer(backend, [record])
    start = backend.get(trainer.model.params.buffer).astype(np.float64)
    trainer.run()
    expected = start
    for t, params in enumerate(record.after):
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * params
    assert not np.allclose(expected, record.after[-1])  # averaging changed something
    xp_assert_close(trainer.model.params.buffer, backend.put(expected), backend, rtol=1e-12)


def test_off_by_default_and_the_weights_are_the_last_steps():
    record = _Record()
    trainer = _trainer("cpu", [record], decay=0.0)
    trainer.run()
    assert trainer.average is None
    np.testing.assert_array_equal(trainer.model.params.buffer, record.after[-1])


def test_a_resumed_run_keeps_its_average(tmp_path):
    whole = _trainer("cpu")
    whole.run()
    first = _trainer("cpu", [StopAt(2, 2)])
    first.run()
    assert first.interrupted
    save_checkpoint(tmp_path / "c.npz", first)
    ckpt = load_checkpoint(tmp_path / "c.npz", "cpu")
    X, y = _data()
    second = Trainer(ckpt.model, X, y, config=ckpt.config, image_shape=None)
    second.restore(ckpt.optimizer, ckpt.state)
    second.run()
    np.testing.assert_array_equal(second.model.params.buffer, whole.model.params.buffer)


def test_a_checkpoint_from_before_the_average_resumes_without_one(tmp_path):
    """Checkpoints written before ``ema`` existed lack it: they ran without an average."""
    from mlp_xp.checkpoint import read_file, write_file

    first = _trainer("cpu", [StopAt(1, 2)], decay=0.0)
    first.run()
    save_checkpoint(tmp_path / "c.npz", first)
    meta, arrays = read_file(tmp_path / "c.npz")
    del meta["state"]["config"]["ema"]
    kept = {k: v for k, v in meta.items() if k not in ("format", "format_version", "kind")}
    write_file(tmp_path / "old.npz", "checkpoint", kept, arrays)
    assert load_checkpoint(tmp_path / "old.npz", "cpu").config.ema == 0.0


def test_early_stopping_with_an_average_says_the_average_is_not_used():
    X, y = _data()
    config = TrainConfig(epochs=2, batch_size=32, patience=1, ema=0.99)
    with pytest.warns(UserWarning, match="moving average is not used; pass ema=0"):
        Trainer(MLP(12, (6,), 3, backend="cpu"), X, y, X, y, config=config, image_shape=None)
