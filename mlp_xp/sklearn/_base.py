"""What both estimators share: the training run, the device, pickling.

The network is an :class:`~mlp_xp.model.MLP` on the device ``device`` names,
trained by a :class:`~mlp_xp.train.Trainer` with a bound optimizer; a
:class:`~mlp_xp.train.Callback` keeps scikit-learn's bookkeeping after every
epoch (``loss_curve_``, the ``tol``/``n_iter_no_change`` stopping rule, early
stopping on a held-out split) and asks the trainer to stop. Nothing here
reaches into the loop: the estimator is a client of the public API.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .. import budget
from ..backends import get_backend
from ..constraints import validate
from ..errors import ConfigError, DataError
from ..model import MLP
from ..optim import SGD, Adam
from ..train import Callback, TrainConfig, Trainer
from ..train.schedules import Plan
from ._inputs import backend_for
from ._params import checked_settings, estimate, image_shape

__all__ = ["BaseMLP", "PREDICT_CHUNK"]

#: Rows per device batch in ``predict``: a bounded device footprint for any input size.
PREDICT_CHUNK = 65536


def _optimizer(model: MLP, scalars: dict):
    """An optimizer bound to ``model.params`` from ``state_dict()``-style settings."""
    if scalars["name"] == "adam":
        return Adam(
            model.params, model.backend, scalars["lr"], scalars["beta1"], scalars["beta2"],
            scalars["eps"],
        )  # fmt: skip
    return SGD(model.params, model.backend, scalars["lr"], scalars["momentum"])


def _rows(X, index: np.ndarray, backend):
    """Rows ``index`` of host or device rows ``X`` (a gather where ``X`` lives)."""
    if not backend.owns(X) or backend.name == "numpy":
        return X[index]
    with backend.scope():
        return backend.xp.take(X, backend.put(index), axis=0)


class BaseMLP(BaseEstimator):
    """The estimator machinery shared by :class:`MLPClassifier` and :class:`MLPRegressor`."""

    def _output_layer(self) -> tuple[str, int]:
        """``(task, n_outputs)`` of the network for the targets seen at the first fit."""
        raise NotImplementedError

    def _validate_training(
        self, X, y, backend, *, reset: bool, incremental: bool, classes=None
    ) -> tuple:
        """``(X, targets)``: validated inputs (host rows, or rows on ``backend``'s device)
        and the encoded host targets the network learns."""
        raise NotImplementedError

    def _validation_score(self, model: MLP, X, y) -> float:
        """The early-stopping score of device rows ``X`` against host targets ``y``."""
        raise NotImplementedError

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=200,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        device="auto",
        dtype="float32",
        schedule="constant",
        augment="none",
        dropout=0.0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.dtype = dtype
        self.schedule = schedule
        self.augment = augment
        self.dropout = dropout

    # -- training ------------------------------------------------------------------
    def _fit(self, X, y, *, incremental: bool, classes=None):
        s = checked_settings(self)
        if incremental and s["early_stopping"]:
            raise ConfigError("partial_fit does not support early_stopping=True")
        fresh = not hasattr(self, "t_") or not (incremental or s["warm_start"])
        backend = backend_for(self.device, X) if fresh else self._live()[0].backend
        X, T = self._validate_training(
            X, y, backend, reset=fresh, incremental=incremental, classes=classes
        )
        if fresh:  # refused before the network is built when it cannot fit
            budget.check(estimate(s, X.shape, self._output_layer()[1]), backend)
            self._initialize(s, X.shape[1], backend)
        model, optimizer = self._live()
        self._twins.clear()  # the weights are about to change
        if not incremental:  # a new optimizer for every fit, warm or not (as scikit-learn)
            optimizer = self._optimizer = _optimizer(model, self._solver_settings(s))
        X_train, T_train, val = X, T, None
        if s["early_stopping"]:
            train, held_out = train_test_split(
                np.arange(T.shape[0]), test_size=s["validation_fraction"],
                random_state=self._seed, stratify=T if is_classifier(self) else None,
            )  # fmt: skip
            X_train, X_val = _rows(X, train, backend), _rows(X, held_out, backend)
            T_train, T_val = T[train], T[held_out]
            if X_val.shape[0] < 2:
                raise DataError(
                    "the validation set is too small: increase validation_fraction "
                    "or the size of your dataset"
                )
            val = (backend.put(X_val, model.dtype), T_val)
        batch = self._batch_size(s, X_train.shape[0])
        model.l2 = validate("l2", s["alpha"] / batch)
        epochs = 1 if incremental else s["max_iter"]
        config = TrainConfig(
            epochs=self._epochs_done + epochs, batch_size=batch, optimizer=s["solver"],
            lr=s["learning_rate_init"], seed=self._seed, schedule=s["schedule"],
            augment=s["augment"], dropout=s["dropout"], ema=0.0,
        )  # fmt: skip
        monitor = _Monitor(self, s, val, incremental, X_train.shape[0])
        trainer = Trainer(
            model, X_train, T_train, config=config, optimizer=optimizer, callbacks=[monitor],
            image_shape=image_shape(s["augment"], X.shape[1]),
        )  # fmt: skip
        trainer.base_lr = s["learning_rate_init"]  # the schedule's base, not the last step's
        trainer.train_state.begin_at(self._epochs_done)  # shuffles keyed by (seed, epoch) go on
        if not incremental:
            self._partial_epochs = 0  # a fit restarts the schedule; partial_fit walks it
        start = self._epochs_done - (getattr(self, "_partial_epochs", 0) if incremental else 0)
        trainer.schedule = _OverMaxIter(
            s["schedule"], s["max_iter"], trainer.steps_per_epoch, start
        )
        self.n_iter_ = 0
        try:
            trainer.run()
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        else:
            if not incremental and not monitor.stopped:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({s['max_iter']}) reached "
                    "and the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        if monitor.best_params is not None:
            model.set_params(monitor.best_params)
        return self

    def _initialize(self, s: dict, n_features: int, backend) -> None:
        """A new network with initial weights drawn from ``random_state``."""
        self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        task, n_outputs = self._output_layer()
        self._model = MLP(
            n_features, s["hidden"], n_outputs, activation=s["activation"], task=task,
            backend=backend, dtype=s["dtype"], seed=self._seed,
        )  # fmt: skip
        self._optimizer = _optimizer(self._model, self._solver_settings(s))
        self._placed_on = self.device
        self._snapshot = None
        self._twins: dict[str, MLP] = {}
        self._epochs_done: int = 0
        self._partial_epochs = 0  # partial_fit's epochs since the last fit
        self._no_improvement_count = 0
        self.t_ = 0
        self.n_iter_ = 0
        self.loss_curve_: list[float] = []
        self.n_layers_ = len(s["hidden"]) + 2
        self.n_outputs_ = n_outputs
        self.out_activation_ = {"classify": "softmax", "binary": "logistic"}.get(task, "identity")
        early = s["early_stopping"]
        self.best_loss_: Any = None if early else np.inf  # None or a float, as scikit-learn's
        self.validation_scores_: Any = [] if early else None
        self.best_validation_score_: Any = -np.inf if early else None

    @staticmethod
    def _solver_settings(s: dict) -> dict:
        return {
            "name": s["solver"], "lr": s["learning_rate_init"], "momentum": s["momentum"] or 0.0,
            "beta1": s["beta_1"], "beta2": s["beta_2"], "eps": s["epsilon"],
        }  # fmt: skip

    @staticmethod
    def _batch_size(s: dict, n: int) -> int:
        if s["batch_size"] == "auto":
            return min(200, n)
        if s["batch_size"] > n:
            warnings.warn(
                f"batch_size {s['batch_size']} is larger than the {n} training samples: using {n}",
                stacklevel=4,
            )
        return min(s["batch_size"], n)

    # -- the network on its device ---------------------------------------------------
    def _live(self) -> tuple:
        """The fitted network and its optimizer, on the device ``device`` names now.

        An unpickled estimator, or one whose ``device`` was changed, builds them
        there from its host snapshot on first use. While ``device`` is what it
        was, the device is not looked up again.
        """
        check_is_fitted(self)
        if self._model is not None and self._placed_on == self.device:
            return self._model, self._optimizer
        backend = get_backend(self.device)
        if self._model is None or self._model.backend != backend:
            snapshot = self._snapshot if self._model is None else self._take_snapshot()
            self._model = MLP.from_params(
                snapshot["config"],
                {k: np.array(v, copy=True) for k, v in snapshot["params"].items()},
                backend,
            )
            scalars, arrays = snapshot["optimizer"]
            self._optimizer = _optimizer(self._model, scalars)
            self._optimizer.load_state_dict(scalars, arrays)
            self._snapshot = None
        self._placed_on = self.device
        return self._model, self._optimizer

    def _take_snapshot(self) -> dict:
        """The network and optimizer as host NumPy arrays and JSON-able settings."""
        model = self._model
        scalars, arrays = self._optimizer.state_dict()
        host = {k: np.array(v, copy=True) for k, v in model.backend.get(arrays).items()}
        return {
            "config": model.config(),
            "params": model.params_numpy(),
            "optimizer": (scalars, host),
        }

    def _host_params(self) -> dict:
        check_is_fitted(self)
        if self._model is None:
            return {k: np.array(v, copy=True) for k, v in self._snapshot["params"].items()}
        return self._model.params_numpy()

    def _outputs(self, X, method: str) -> np.ndarray:
        """``model.<method>`` of validated host rows, computed on the device, as NumPy.

        Floating outputs come back in the input's float dtype (scikit-learn's
        convention), whatever precision the network computes in.
        """
        model = self._predictor(X.dtype.name)
        backend = model.backend
        chunks = [
            backend.get(getattr(model, method)(backend.put(X[i : i + PREDICT_CHUNK], model.dtype)))
            for i in range(0, X.shape[0], PREDICT_CHUNK)
        ]
        out = np.concatenate(chunks) if len(chunks) != 1 else np.asarray(chunks[0])
        return out.astype(X.dtype, copy=False) if out.dtype.kind == "f" else out

    def _predictor(self, dtype: str) -> MLP:
        """The network that predicts for inputs of ``dtype``: itself, or its twin in ``dtype``.

        Predictions are computed in the input's precision. A float32 network
        given float64 rows predicts through a float64 copy of its weights (made
        once per fitted state), so results do not depend on how the rows are
        batched beyond float64 rounding, as scikit-learn's checks demand; they
        match the float32 network's own outputs to float32 rounding.
        """
        model, _ = self._live()
        if dtype == model.dtype:
            return model
        twin = self._twins.get(dtype)
        if twin is None or twin.backend != model.backend:
            twin = MLP.from_params(
                {**model.config(), "dtype": dtype}, model.params_numpy(), model.backend
            )
            self._twins[dtype] = twin  # a container fit made: predict leaves __dict__ as it was
        return twin

    @property
    def model_(self) -> MLP:
        return self._live()[0]

    @property
    def coefs_(self) -> list:
        params = self._host_params()
        return [params[f"W{i}"] for i in range(1, len(params) // 2 + 1)]

    @property
    def intercepts_(self) -> list:
        params = self._host_params()
        return [params[f"b{i}"] for i in range(1, len(params) // 2 + 1)]

    # -- pickling: host arrays only ---------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        if state.get("_model") is not None:
            state["_snapshot"] = self._take_snapshot()
            state["_model"] = state["_optimizer"] = None
        if "_twins" in state:
            state["_twins"] = {}
        return state


class _OverMaxIter(Plan):
    """The learning-rate schedule over ``max_iter`` epochs, asked by the loop's global step.

    ``fit``, warm or not, runs the whole schedule from its start (its epochs go on counting
    for the shuffles); ``partial_fit`` walks through it one epoch a call from the last
    ``fit`` (or the first call), then holds its last rate. (It was planned over the epochs
    done so far plus this call's: ``partial_fit`` sat at the end of a schedule planned one
    epoch longer each call, and a warm refit started in the middle of one.) ``start`` is
    the loop's epoch at which the schedule's first epoch falls.
    """

    def __init__(self, name: str, max_iter: int, steps: int, start: int):
        super().__init__(name, max_iter * steps)
        self.offset = start * steps

    def __call__(self, step: float) -> float:
        return super().__call__(min(max(step - self.offset, 0), self.total - 1))


class _Monitor(Callback):
    """scikit-learn's per-epoch bookkeeping and stopping rule, as a training callback."""

    def __init__(self, est: BaseMLP, s: dict, val, incremental: bool, n_train: int):
        self.est, self.s, self.val = est, s, val
        self.incremental, self.n_train = incremental, n_train
        self.stopped = False
        self.best_params: Any = None  # a device snapshot of the best parameters

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        est, s = self.est, self.s
        est._epochs_done += 1
        est._partial_epochs += self.incremental
        est.n_iter_ += 1
        est.t_ += self.n_train
        est.loss_ = loss = record["train_loss"]
        est.loss_curve_.append(loss)
        if s["verbose"]:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.val is not None:
            score = est._validation_score(trainer.model, *self.val)
            est.validation_scores_.append(score)
            if s["verbose"]:
                print(f"Validation score: {score:f}")
            improved = score >= est.best_validation_score_ + s["tol"]
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_params = trainer.model.copy_params()
            what = "Validation score"
        elif est.best_loss_ is not None:
            improved = loss <= est.best_loss_ - s["tol"]
            est.best_loss_ = min(est.best_loss_, loss)
            what = "Training loss"
        else:  # partial_fit of an estimator made with early stopping: nothing to watch
            return
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        if not self.incremental and est._no_improvement_count > s["n_iter_no_change"]:
            if s["verbose"]:
                print(
                    f"{what} did not improve more than tol={s['tol']:f} for "
                    f"{s['n_iter_no_change']} consecutive epochs. Stopping."
                )
            self.stopped = True
            trainer.request_stop()
