"""The scikit-learn estimators: drop-in behaviour, meta-estimators, devices, pickling."""

import io
import pickle
import subprocess
import sys
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest
from sklearn import neural_network
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlp_xp import load_model, save_model
from mlp_xp.errors import ConfigError, DataError
from mlp_xp.sklearn import MLPClassifier, MLPRegressor, _base

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_pipeline_grid_search_and_cross_validation(iris):
    X, y = load_iris(return_X_y=True)  # unscaled: the pipeline scales
    pipe = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=150, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.85
    grid = GridSearchCV(
        pipe,
        {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)], "mlpclassifier__alpha": [1e-4, 1.0]},
        cv=3,
    ).fit(X, y)
    assert set(grid.best_params_) == {
        "mlpclassifier__hidden_layer_sizes",
        "mlpclassifier__alpha",
    }
    assert grid.best_score_ > 0.85 and grid.score(X, y) > 0.85
    assert len(grid.cv_results_["mean_test_score"]) == 4


def test_accuracy_is_that_of_scikit_learn_at_the_same_settings(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    settings = dict(hidden_layer_sizes=(64,), max_iter=60, random_state=0)
    ours = MLPClassifier(**settings).fit(X_train, y_train).score(X_test, y_test)
    theirs = neural_network.MLPClassifier(**settings).fit(X_train, y_train).score(X_test, y_test)
    assert ours > 0.93 and abs(ours - theirs) < 0.03


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["setosa", "versicolor", "virginica"]),
        np.array([-7, 3, 100]),
        np.array(["cat", "dog", "owl"], dtype=object),
    ],
)
def test_any_label_type_comes_back_as_itself(iris, labels):
    X, y = iris
    clf = MLPClassifier((16,), learning_rate_init=0.01, max_iter=100, random_state=0)
    clf.fit(X, labels[y])
    np.testing.assert_array_equal(clf.classes_, labels)
    pred = clf.predict(X)
    assert pred.dtype == clf.classes_.dtype and set(pred) <= set(labels)
    assert np.mean(pred == labels[y]) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)


def test_two_classes_use_one_sigmoid_unit(iris):
    X, y = iris
    labels = np.where(y == 0, "yes", "no")
    clf = MLPClassifier((8,), learning_rate_init=0.01, max_iter=100, random_state=0)
    clf.fit(X, labels)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (8, 1)
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert clf.score(X, labels) == 1.0
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


def test_one_class_is_refused_in_one_sentence(iris):
    with pytest.raises(DataError, match="needs at least 2 classes; y has 1 class"):
        MLPClassifier().fit(iris[0], np.zeros(150))


def test_multi_output_regression():
    X, Y = make_regression(400, 6, n_targets=3, noise=0.1, random_state=0)
    Y = Y / Y.std(axis=0)
    reg = MLPRegressor((32,), max_iter=300, learning_rate_init=0.01, random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 3 and reg.out_activation_ == "identity"
    pred = reg.predict(X)
    assert pred.shape == (400, 3) and pred.dtype == np.float64
    assert reg.score(X, Y) > 0.95
    one = MLPRegressor((8,), max_iter=50, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (400,)


def test_attributes_match_scikit_learns(iris):
    X, y = iris
    settings = dict(hidden_layer_sizes=(10, 5), max_iter=7, random_state=0)
    ours = MLPClassifier(**settings).fit(X, y)
    theirs = neural_network.MLPClassifier(**settings).fit(X, y)
    for name in ("n_features_in_", "n_iter_", "n_layers_", "n_outputs_", "out_activation_", "t_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    assert all(type(c) is np.ndarray for c in ours.coefs_ + ours.intercepts_)
    assert len(ours.loss_curve_) == 7 and ours.loss_ == ours.loss_curve_[-1]
    assert ours.best_loss_ == min(ours.loss_curve_) and ours.validation_scores_ is None


def test_the_stopping_rule_is_scikit_learns(iris):
    X, y = iris
    settings = dict(hidden_layer_sizes=(8,), tol=1e9, n_iter_no_change=3, random_state=0)
    ours = MLPClassifier(**settings).fit(X, y)
    theirs = neural_network.MLPClassifier(**settings).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 5  # the first epoch improves on inf, 4 do not
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier((8,), max_iter=3).fit(X, y)


def test_early_stopping_keeps_the_best_validation_weights(digits_split):
    X, _, y, _ = digits_split
    clf = MLPClassifier(
        (32,), early_stopping=True, n_iter_no_change=4, learning_rate_init=0.01, random_state=0
    ).fit(X, y)
    scores = clf.validation_scores_
    assert clf.n_iter_ == len(scores) < 200 and clf.best_loss_ is None
    assert clf.best_validation_score_ == max(scores) > 0.9
    X_train, X_val, y_train, y_val = train_test_split(
        X, np.searchsorted(clf.classes_, y), test_size=0.1, random_state=clf._seed, stratify=y
    )
    assert clf.score(X_val, y_val) == pytest.approx(max(scores))
    reg = MLPRegressor((8,), early_stopping=True, max_iter=30, random_state=0)
    reg.fit(X, y.astype(float))
    assert len(reg.validation_scores_) == reg.n_iter_ and reg.best_validation_score_ > 0


def test_partial_fit_epochs_are_fit_epochs(iris):
    X, y = iris
    settings = dict(hidden_layer_sizes=(8,), batch_size=32, random_state=0, n_iter_no_change=99)
    fitted = MLPClassifier(max_iter=4, **settings).fit(X, y)
    stepped = MLPClassifier(**settings)
    for _ in range(4):
        stepped.partial_fit(X, y, classes=[0, 1, 2])
    assert stepped.n_iter_ == 1 and stepped.t_ == fitted.t_ == 600
    assert stepped.loss_curve_ == fitted.loss_curve_
    pairs = zip(
        stepped.coefs_ + stepped.intercepts_, fitted.coefs_ + fitted.intercepts_, strict=True
    )
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)


def test_partial_fit_guards_its_classes(iris):
    X, y = iris
    with pytest.raises(DataError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    clf = MLPClassifier((4,)).partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    assert clf.n_outputs_ == 3  # softmax over every class named, seen or not
    with pytest.raises(DataError, match=r"y has labels \[7\] that are not in classes_"):
        clf.partial_fit(X[:2], [7, 7])
    with pytest.raises(DataError, match="differ from those of the first call"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ConfigError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_continues_from_the_fitted_weights(iris):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=5, warm_start=True, random_state=0).fit(X, y)
    first = clf.coefs_[0].copy()
    losses = list(clf.loss_curve_)
    clf.fit(X, y)
    assert clf.n_iter_ == 5 and clf.t_ == 1500 and len(clf.loss_curve_) == 10
    assert clf.loss_curve_[:5] == losses and clf.loss_curve_[5] < losses[0]
    cold = clone(clf).set_params(warm_start=False).fit(X, y)
    np.testing.assert_array_equal(cold.coefs_[0], clone(cold).fit(X, y).coefs_[0])
    assert not np.array_equal(first, clf.coefs_[0])
    with pytest.raises(DataError, match="warm_start needs the classes of the first fit"):
        clf.fit(X, np.where(y == 2, 9, y))


def test_verbose_prints_each_epoch_like_scikit_learn(iris):
    out = io.StringIO()
    with redirect_stdout(out):
        MLPClassifier((4,), max_iter=2, verbose=True, random_state=0).fit(*iris)
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["Iteration 1", "Iteration 2"]
    assert lines[0].startswith("Iteration 1, loss = ")


def test_alpha_means_what_it_means_in_scikit_learn(iris):
    clf = MLPClassifier((4,), alpha=0.5, batch_size=50, max_iter=1).fit(*iris)
    assert clf.model_.l2 == pytest.approx(0.5 / 50)
    auto = MLPClassifier((4,), alpha=0.5, max_iter=1).fit(*iris)  # auto: min(200, 150)
    assert auto.model_.l2 == pytest.approx(0.5 / 150)
    with pytest.warns(UserWarning, match="batch_size 500 is larger than the 150"):
        MLPClassifier((4,), batch_size=500, max_iter=1).fit(*iris)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"activation": "gelu"}, "activation must be one of identity, logistic, "),
        ({"solver": "lbfgs"}, "solver must be one of sgd, adam, got 'lbfgs'"),
        ({"alpha": -1.0}, "alpha must be a finite number >= 0, got -1.0"),
        ({"batch_size": 0}, "batch_size must be 'auto' or an integer >= 1, got 0"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1, got 0"),
        ({"hidden_layer_sizes": (10, 0)}, "a hidden layer size must be an integer >= 1, got 0"),
        ({"hidden_layer_sizes": 2.5}, "hidden_layer_sizes must be an integer >= 1, got 2.5"),
        ({"early_stopping": "yes"}, "early_stopping must be a boolean, got 'yes'"),
        ({"validation_fraction": 1.0}, "validation_fraction must be a finite number in (0, 1)"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"augment": "affine"}, "augment='affine' needs square images as rows, got 3 features"),
    ],
)
def test_bad_parameters_are_refused_at_fit_in_one_sentence(iris, params, message):
    clf = MLPClassifier(**params)  # scikit-learn's rule: __init__ only stores
    with pytest.raises(ConfigError) as err:
        clf.fit(iris[0][:, :3], iris[1])
    assert str(err.value).startswith(message)
    assert isinstance(err.value, ValueError)


def test_scikit_learns_activation_names_and_maxout_layers(iris):
    X, y = iris
    for name, ours in (("identity", "linear"), ("logistic", "sigmoid"), ("tanh", "tanh")):
        clf = MLPClassifier((8,), activation=name, max_iter=3, random_state=0).fit(X, y)
        assert clf.model_.activations == [ours]
    clf = MLPClassifier(("maxout:8:3", 6), learning_rate_init=0.01, max_iter=100, random_state=0)
    clf.fit(X, y)
    assert clf.model_.activations == ["maxout", "relu"] and clf.score(X, y) > 0.9
    assert clf.coefs_[0].shape == (4, 24)


def test_augmented_training_on_square_images(digits_split):
    X_train, X_test, y_train, y_test = digits_split  # 8x8 digits: rows are square images
    settings = dict(hidden_layer_sizes=(64,), learning_rate_init=0.01, max_iter=30, random_state=0)
    shifted = MLPClassifier(augment="shift", **settings).fit(X_train, y_train)
    plain = MLPClassifier(**settings).fit(X_train, y_train)
    assert shifted.score(X_test, y_test) > 0.85
    assert shifted.loss_curve_[-1] > plain.loss_curve_[-1]  # it learned from distorted digits


def test_pickles_as_host_arrays_and_predicts_the_same(iris):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=20, random_state=0).fit(X, y)
    blob = pickle.dumps(clf)
    assert b"mlp_xp.model" not in blob and b"mlp_xp.backends" not in blob
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    again.partial_fit(X, y)  # the optimizer's state came along: training goes on
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(again.coefs_[0], clf.coefs_[0])


def test_changing_the_device_moves_the_fitted_network(iris):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=20, random_state=0, device="cpu").fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(device="array-api-strict")
    assert clf.model_.backend.name == "array_api_strict"
    np.testing.assert_allclose(clf.predict_proba(X), before, rtol=1e-6, atol=1e-9)
    clf.partial_fit(X, y)  # and trains there, optimizer state included
    assert clf.model_.backend.name == "array_api_strict"


def test_float32_training_float64_predictions(iris):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=20, random_state=0).fit(X, y)
    model = clf.model_
    assert model.dtype == "float32"
    own = np.asarray(model.predict_proba(X.astype(np.float32)))
    assert clf.predict_proba(X).dtype == np.float64
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(clf.predict_proba(X), own, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(clf.predict_proba(X.astype(np.float32)), own)
    wide = MLPClassifier((8,), max_iter=20, random_state=0, dtype="float64").fit(X, y)
    assert wide.model_.dtype == "float64" and wide.coefs_[0].dtype == np.float64


def test_predictions_in_chunks_equal_one_pass(iris, monkeypatch):
    X, y = iris
    clf = MLPRegressor((8,), max_iter=5, random_state=0).fit(X, y.astype(float))
    whole = clf.predict(X)
    monkeypatch.setattr(_base, "PREDICT_CHUNK", 7)
    np.testing.assert_allclose(clf.predict(X), whole, rtol=1e-12)


def test_the_network_saves_as_a_model_file(iris, tmp_path):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=20, random_state=0).fit(X, y)
    save_model(tmp_path / "iris.npz", clf.model_)
    loaded = load_model(tmp_path / "iris.npz", backend="cpu")
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(X32), clf.predict_proba(X32))


def test_importing_mlp_xp_leaves_scikit_learn_alone():
    code = "import sys, mlp_xp; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
def test_fits_on_the_gpu_like_on_the_cpu_and_predicts_on_the_cpu(gpu_backend, iris):
    X, y = iris
    clf = MLPClassifier((16,), max_iter=100, random_state=0, device="gpu").fit(X, y)
    cpu = MLPClassifier((16,), max_iter=100, random_state=0, device="cpu").fit(X, y)
    assert clf.model_.backend.name == "cupy" and clf.n_iter_ == cpu.n_iter_
    on_gpu = clf.predict_proba(X)
    np.testing.assert_allclose(on_gpu, cpu.predict_proba(X), rtol=1e-4, atol=1e-5)
    moved = pickle.loads(pickle.dumps(clf)).set_params(device="cpu")
    np.testing.assert_allclose(moved.predict_proba(X), on_gpu, rtol=1e-5, atol=1e-7)
    assert moved.model_.backend.name == "numpy"


def test_ctrl_c_keeps_what_was_learned_as_scikit_learn_does(iris, monkeypatch):
    class CtrlCAfterOneEpoch(_base.Trainer):
        def run(self):
            self.run_epoch()
            raise KeyboardInterrupt

    monkeypatch.setattr(_base, "Trainer", CtrlCAfterOneEpoch)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf = MLPClassifier((4,), max_iter=50, random_state=0).fit(*iris)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1
    assert clf.predict(iris[0]).shape == (150,)


def test_the_schedule_spans_max_iter_for_fit_and_partial_fit(monkeypatch):
    """It was planned over the epochs done plus this call's: partial_fit sat at the end of a
    cosine (its rate near 0 from the first call) and a warm refit began mid-cosine."""
    rates: list = []
    seen = _base._Monitor.on_epoch_end
    monkeypatch.setattr(
        _base._Monitor,
        "on_epoch_end",
        lambda self, trainer, record: (rates.append(record["lr"]), seen(self, trainer, record)),
    )
    X, y = make_classification(n_samples=64, n_features=8, n_informative=5, random_state=0)
    settings = dict(hidden_layer_sizes=(6,), schedule="cosine", max_iter=4, batch_size=16,
                    learning_rate_init=0.1, n_iter_no_change=100, device="cpu")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(warm_start=True, **settings).fit(X, y)
        first = list(rates)
        est.fit(X, y)  # warm: the same schedule again, from its start
    assert rates[4:] == pytest.approx(first) and first[0] > first[-1]
    rates.clear()
    online = MLPClassifier(**settings)
    for _ in range(6):
        online.partial_fit(X, y, classes=np.unique(y))
    assert rates[:4] == pytest.approx(first)  # one epoch of it a call
    assert rates[4:] == pytest.approx([first[-1]] * 2)  # then its last rate
    rates.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        online.fit(X, y)  # a fit restarts the schedule...
    online.partial_fit(X, y)  # ...and partial_fit walks it again from the start
    assert rates[4] == pytest.approx(first[0])
