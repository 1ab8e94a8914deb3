"""One door for inputs and targets: each refusal is one DataError, raised before anything
reaches the device, on every backend (host data checked on the host, device data in place)."""

from __future__ import annotations

import numpy as np
import pytest

from mlp_xp import MLP, fit
from mlp_xp.errors import DataError

N = 24


def _data(n_outputs=10, rows=N, seed=0):
    r = np.random.default_rng(seed)
    X = r.random((rows, 6)).astype(np.float32)
    y = (np.arange(rows) % n_outputs).astype(np.int64)
    return X, y


def _fit(backend, task, X, y, X_val=None, y_val=None, n_outputs=None, on_device=False):
    """Train a small model, expecting a refusal that leaves it and the device untouched;
    with ``on_device`` the arrays are first put on its device."""
    n_outputs = n_outputs or {"classify": 10, "binary": 1, "regress": 1}[task]
    model = MLP(6, (5,), n_outputs, task=task, backend=backend, seed=0)
    before = backend.get(model.params.buffer).copy()
    if on_device:
        X, y, X_val, y_val = (None if a is None else backend.put(a) for a in (X, y, X_val, y_val))
    counts = backend.op_counts()
    try:
        fit(model, X, y, X_val, y_val, epochs=1, batch_size=8)
    finally:
        np.testing.assert_array_equal(backend.get(model.params.buffer), before)
        after = backend.op_counts()
        if counts is not None and not on_device:  # refused before any copy to the device
            assert after["h2d"] == counts["h2d"], (counts, after)


REFUSED = [
    # (task, n_outputs, mutate(X, y) -> (X, y), what the message names)
    ("classify", 10, lambda X, y: (X, np.where(y == 9, 10, y)),
     r"labels 0\.\.10; expected class labels 0\.\.9"),
    ("classify", 10, lambda X, y: (X, y - 1), r"labels -1\.\.8"),
    ("classify", 10, lambda X, y: (X, y + 0.5), "not whole numbers"),
    ("classify", 10, lambda X, y: (X, np.eye(10)[y]), "one-hot rows of shape"),
    ("classify", 10, lambda X, y: (X, y[:-1]), "y have 23 rows but training inputs X have 24"),
    ("classify", 10, lambda X, y: (X[:, :5], y), r"training inputs X have shape \(24, 5\)"),
    ("classify", 10, lambda X, y: (np.where(X > 0.9, np.nan, X), y), "X hold NaN or Inf"),
    ("binary", 1, lambda X, y: (X, y % 3), r"values other than 0 and 1 \(0\.\.2\)"),
    ("regress", 1, lambda X, y: (X, np.stack([y, y, y], 1).astype(float)),
     r"shape \(24, 3\); expected one value"),
    ("regress", 2, lambda X, y: (X, y.astype(float)), r"shape \(24,\); expected 2 values per row"),
    ("regress", 1, lambda X, y: (X, np.where(y == 3, np.inf, y).astype(float)),
     "y hold NaN or Inf"),
]  # fmt: skip


@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device"])
@pytest.mark.parametrize("task, n_outputs, mutate, match", REFUSED)
def test_training_data_the_model_cannot_learn_from_is_refused(
    backend, task, n_outputs, mutate, match, on_device
):
    X, y = mutate(*_data())
    with pytest.raises(DataError, match=match) as info:
        _fit(backend, task, X, y, n_outputs=n_outputs, on_device=on_device)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda Xv, yv: (Xv, None), "X_val and y_val together; got only X_val"),
        (lambda Xv, yv: (None, yv), "got only y_val"),
        (lambda Xv, yv: (Xv, yv[:-2]), "y_val have 10 rows but held-out inputs X_val have 12"),
        (lambda Xv, yv: (Xv[:, :4], yv), r"X_val have shape \(12, 4\)"),
        (lambda Xv, yv: (Xv, yv + 3), r"y_val hold labels 3\.\.12; expected class labels 0\.\.9"),
        (lambda Xv, yv: (Xv[:0], yv[:0]), "X_val are empty"),
    ],
)
def test_a_held_out_pair_is_checked_against_itself_and_the_model(backend, mutate, match):
    X, y = _data()
    X_val, y_val = mutate(*_data(rows=12, seed=1))
    with pytest.raises(DataError, match=match):
        _fit(backend, "classify", X, y, X_val, y_val)


@pytest.mark.parametrize(
    "task, n_outputs, targets",
    [
        ("classify", 10, lambda y: y.astype(np.float64)),  # 3.0 is class 3
        ("binary", 1, lambda y: (y % 2).astype(bool)),
        ("binary", 1, lambda y: (y % 2).reshape(-1, 1)),
        ("classify", 10, lambda y: y.reshape(-1, 1)),  # a column of labels
        ("regress", 1, lambda y: y.astype(np.float32).reshape(-1, 1)),
        ("regress", 2, lambda y: np.stack([y, -y], 1).astype(np.float32)),
    ],
)
@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device"])
def test_valid_targets_in_every_accepted_form_train_and_score(
    backend, task, n_outputs, targets, on_device
):
    X, y = _data()
    X_val, y_val = _data(rows=12, seed=1)
    y, y_val = targets(y), targets(y_val)
    if on_device:
        y, y_val = backend.put(y), backend.put(y_val)
    model = MLP(6, (5,), n_outputs, task=task, backend=backend, seed=0)
    history = fit(model, X, y, X_val, y_val, epochs=1, batch_size=8)
    assert np.isfinite(history.val_loss[-1])
    scored = model.evaluate(X_val, y_val)
    if task == "regress":
        assert scored["mse"] >= 0
    else:  # a fraction of the 12 rows, however the labels were given
        assert 0 <= scored["accuracy"] <= 1 and scored["accuracy"] * 12 % 1 < 1e-9
        assert history.val_accuracy[-1] == pytest.approx(scored["accuracy"])


def test_evaluate_refuses_labels_it_cannot_score_and_empty_sets(backend):
    X, y = _data()
    model = MLP(6, (5,), 10, backend=backend, seed=0)
    with pytest.raises(DataError, match=r"evaluate's labels hold labels 3\.\.12"):
        model.evaluate(X, y + 3)
    with pytest.raises(DataError, match=r"labels of shape \(23,\) for 24 input rows"):
        model.evaluate(X, y[:-1])
    with pytest.raises(DataError, match="empty"):
        model.evaluate(X[:0], y[:0])


def test_a_rank_refuses_with_the_others_and_an_empty_held_out_share_trains():
    """The data-parallel trainer checks the whole sets before taking its share, so a
    label in another rank's share is refused on every rank, and a rank whose share of
    the held-out split is empty still trains (3 held-out rows, 4 ranks)."""
    from mlp_xp.parallel import DistributedTrainer, LocalWorld
    from mlp_xp.train import TrainConfig

    class Rank(LocalWorld):
        def __init__(self, rank, size):
            super().__init__()
            self.rank, self.size = rank, size

    X, y = _data()
    X_val, y_val = _data(rows=3, seed=1)
    config = TrainConfig(epochs=1, batch_size=8, augment="none")
    for rank in range(4):
        model = MLP(6, (5,), 10, backend="cpu", seed=0)
        bad = np.where(np.arange(3) == 2, 11, y_val)  # in the last rank's share only
        with pytest.raises(DataError, match=r"y_val hold labels 0\.\.11"):
            DistributedTrainer(Rank(rank, 4), model, X, y, X_val, bad, config)
        trainer = DistributedTrainer(Rank(rank, 4), model, X, y, X_val, y_val, config)
        assert trainer.n_val == (rank > 0)


def test_the_distributed_held_out_ece_is_the_ece_of_the_whole_set():
    """Two ranks' shares: one overconfident and wrong, one right. The ECE of the whole
    set comes from the bins summed over the ranks, not from the mean of the two ECEs."""
    from mlp_xp.calibration import Reliability
    from mlp_xp.parallel.trainer import combine_metrics

    model = MLP(6, (5,), 10, backend="cpu", seed=0)
    X, y = _data(rows=40)
    shares = [(X[:10], y[:10]), (X[10:], y[10:])]
    everyone = [model.evaluate(Xs, ys, bins=True) for Xs, ys in shares]
    whole = model.evaluate(X, y, bins=True)
    combined = combine_metrics(everyone)
    assert combined["samples"] == 40
    assert combined["accuracy"] == pytest.approx(whole["accuracy"])
    assert combined["ece"] == pytest.approx(whole["ece"])
    mean_of_shares = (everyone[0]["ece"] * 10 + everyone[1]["ece"] * 30) / 40
    assert combined["ece"] != pytest.approx(mean_of_shares)  # what it was before
    assert Reliability.from_sums(np.asarray(whole["bins"])).ece == pytest.approx(whole["ece"])
