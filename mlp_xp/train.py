"""The training loop.

Rules it keeps (see DESIGN): the training set moves to the device once; each
epoch's shuffle is drawn on the host and sent as one index array; nothing is
copied back or synchronised inside a step -- the per-step losses stay on the
device and become Python floats once, at the end of the epoch, where the
divergence guard also looks at them.

Randomness is counter-based: epoch ``e`` shuffles with
``default_rng((seed, e))`` and step ``s`` augments with
``default_rng((seed, e, s))``, so a run interrupted after any step resumes
bit-for-bit on the same device.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, DataError, DivergenceError
from .model import MLP
from .optim import Optimizer, make_optimizer

__all__ = ["TrainConfig", "Trainer", "History", "fit", "Callback"]


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (all host Python values).

    The defaults are the digit recipe chosen by 5-fold cross-validation
    (``docs/accuracy.md``): SGD with momentum 0.9, lr 0.05 on a cosine schedule,
    batch 128, 60 epochs of random affine distortions. For inputs that are not
    28x28 images pass ``augment="none"``.
    """

    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "momentum"
    lr: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    augment: str = "affine"
    dropout: float = 0.0
    patience: int = 0  # early stopping: epochs without improvement (0 = off)
    fast_path: bool = True  # use a backend's tested fast step where one applies

    def validate(self) -> "TrainConfig":
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.lr, (int, float)) or not (self.lr > 0) or math.isinf(self.lr):
            raise ConfigError(f"learning rate must be a finite number > 0, got {self.lr!r}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) \
                or self.patience < 0:
            raise ConfigError(f"patience must be an integer >= 0, got {self.patience!r}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warm-up epochs must be >= 0, got {self.warmup_epochs!r}")
        from .schedules import make_schedule
        from .augment import make_augmenter
        make_schedule(self.schedule, 1, 1.0)
        make_augmenter(self.augment)
        return self


@dataclass
class History:
    """Per-epoch records of a run, as host floats."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)  # classify / binary tasks
    val_mse: list = field(default_factory=list)       # regress task
    seconds: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def rows(self) -> list[dict]:
        """One dict per epoch (for CSV logs)."""
        keys = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_mse", "seconds", "lr")
        columns = {k: getattr(self, k) for k in keys}
        return [{k: (v[i] if i < len(v) else None) for k, v in columns.items()}
                for i in range(len(self.epoch))]


class Callback:
    """Hooks the loop calls; the default does nothing. All arguments are host values."""

    def on_epoch_start(self, trainer: "Trainer", epoch: int, n_steps: int) -> None: ...

    def on_step(self, trainer: "Trainer", step: int) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", record: dict) -> None: ...


class Trainer:
    """Mini-batch gradient descent on an :class:`~mlp_xp.model.MLP`.

    Parameters
    ----------
    model : MLP
    X, y : arrays
        Training inputs (N, n_inputs) and labels/targets, NumPy or already on
        the model's backend; they are moved to the device once.
    X_val, y_val : arrays, optional
        Held-out split, evaluated after every epoch.
    config : TrainConfig
    optimizer : Optimizer, optional
        Defaults to the one ``config.optimizer`` names.
    """

    def __init__(self, model: MLP, X, y, X_val=None, y_val=None, config: TrainConfig | None = None,
                 optimizer: Optimizer | None = None, callbacks: list[Callback] | None = None,
                 image_shape: tuple[int, int] | None = (28, 28)):
        from .augment import make_augmenter
        from .schedules import make_schedule

        self.model = model
        self.backend = model.backend
        self.config = (config or TrainConfig()).validate()
        self.X = self._to_device(X, model.dtype, "training inputs")
        self.y = self._to_device(y, None, "training labels")
        model.check_input(self.X)
        if self.X.shape[0] != self.y.shape[0]:
            raise DataError(f"{self.X.shape[0]} training inputs but {self.y.shape[0]} labels")
        if self.X.shape[0] == 0:
            raise DataError("the training set is empty")
        self.has_val = X_val is not None
        if self.has_val:
            self.X_val = self._to_device(X_val, model.dtype, "validation inputs")
            self.y_val = self._to_device(y_val, None, "validation labels")
        n = self.X.shape[0]
        self.batch_size = self.config.batch_size
        if self.batch_size > n:
            warnings.warn(f"batch size {self.batch_size} is larger than the {n} training "
                          f"samples; using {n} (full-batch gradient descent)", stacklevel=2)
            self.batch_size = n
        self.steps_per_epoch = -(-n // self.batch_size)
        self.optimizer = optimizer or make_optimizer(self.config.optimizer, self.config.lr,
                                                     self.config.momentum)
        self.base_lr = self.config.lr
        self.schedule = make_schedule(self.config.schedule,
                                      self.config.epochs * self.steps_per_epoch,
                                      self.config.warmup_epochs * self.steps_per_epoch)
        self.fast_step = None
        if self.config.fast_path:
            from .fastpath import NumpySGDStep
            if NumpySGDStep.supports(model, self.optimizer, self.config.dropout):
                self.fast_step = NumpySGDStep(model, self.optimizer)
        self.augmenter = make_augmenter(self.config.augment, image_shape)
        if self.augmenter is not None and (image_shape is None or
                                           model.n_inputs != image_shape[0] * image_shape[1]):
            raise ConfigError(f"augment={self.config.augment!r} needs {image_shape} images as "
                              f"inputs, the model has {model.n_inputs}; use augment='none'")
        self.callbacks = list(callbacks or [])
        self.history = History()
        self.epoch = 0          # epochs completed
        self.step = 0           # steps completed inside the current epoch
        self.best_score = -math.inf
        self.best_params: dict | None = None
        self.interrupted = False
        self.last_loss = None   # device scalar of the latest step (read only when logging)
        self._stop = threading.Event()

    def _to_device(self, a, dtype, what):
        """Move an array to the device once, checking it is numeric and finite."""
        xp = self.backend.xp
        if not self.backend.owns(a):
            a = np.asarray(a)
            if a.dtype.kind not in "biuf":
                raise DataError(f"{what} must be numeric, got {a.dtype}")
            if dtype is None:
                dtype = np.int64 if a.dtype.kind in "biu" else self.model.dtype
            a = self.backend.asarray(a, dtype)
        if a.dtype in (xp.float32, xp.float64) and not bool(xp.all(xp.isfinite(a))):
            raise DataError(f"{what} contain NaN or Inf")
        return a

    # -- the loop --------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop after the current step (what Ctrl-C does)."""
        self._stop.set()

    def run(self) -> History:
        """Train until ``config.epochs`` are done, early stopping, or an interrupt.

        Raises
        ------
        DivergenceError
            The loss became NaN/Inf; the parameters from the start of that
            epoch (the last good ones) are restored first.
        """
        # the divergence guard reports non-finite losses itself: no NumPy warnings
        with self._signals(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while self.epoch < self.config.epochs:
                if not self.run_epoch():
                    self.interrupted = True
                    break
                if self._early_stop():
                    break
        if not self.interrupted and self.best_params is not None and self.config.patience:
            self.model.set_params(self.best_params)
        return self.history

    def run_epoch(self) -> bool:
        """Train one epoch (or the rest of an interrupted one) and record it.

        Returns False when a stop was requested before the epoch finished.
        """
        xp, model, cfg = self.backend.xp, self.model, self.config
        e = self.epoch
        n = self.X.shape[0]
        order = np.random.default_rng((cfg.seed, e)).permutation(n)
        idx = self.backend.asarray(order, np.int64)
        snapshot = model.copy_params()
        for cb in self.callbacks:
            cb.on_epoch_start(self, e + 1, self.steps_per_epoch)
        losses = []
        self.backend.synchronize()
        t0 = time.perf_counter()
        while self.step < self.steps_per_epoch:
            s = self.step
            if self._stop.is_set():
                return False
            batch = idx[s * self.batch_size:min((s + 1) * self.batch_size, n)]
            xb = xp.take(self.X, batch, axis=0)
            masks = None
            if self.augmenter is not None or cfg.dropout:
                step_rng = np.random.default_rng((cfg.seed, e, s))
                if self.augmenter is not None:
                    xb = self.augmenter(xp, xb, step_rng, self.backend)
                if cfg.dropout:
                    masks = model.dropout_masks(step_rng, xb.shape[0], cfg.dropout)
            T = model.targets(xp.take(self.y, batch, axis=0))
            self.optimizer.lr = self.base_lr * self.schedule(e * self.steps_per_epoch + s)
            if self.fast_step is not None:
                E = self.fast_step(xb, T)
            else:
                E, grads = model.loss_and_grads(xb, T, masks)
                self.optimizer.update_params(model.params, grads)
            losses.append(E)
            self.last_loss = E
            self.step += 1
            for cb in self.callbacks:
                cb.on_step(self, self.step)
        self.backend.synchronize()
        seconds = time.perf_counter() - t0
        step_losses = self.backend.to_numpy(xp.stack(losses)).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(step_losses))
        if bad.size:
            model.set_params(snapshot)
            raise DivergenceError(
                f"training diverged: the loss became {step_losses[bad[0]]} at epoch {e + 1}, "
                f"step {bad[0] + 1}; the parameters from before that epoch were kept; "
                f"try a lower learning rate (now {self.base_lr:g})", epoch=e + 1,
                step=int(bad[0]) + 1)
        self._record(e + 1, float(step_losses.mean()), seconds)
        self.epoch += 1
        self.step = 0
        return True

    def _record(self, epoch: int, train_loss: float, seconds: float) -> None:
        h = self.history
        h.epoch.append(epoch)
        h.train_loss.append(train_loss)
        h.seconds.append(seconds)
        h.lr.append(self.optimizer.lr)
        record = {"epoch": epoch, "train_loss": train_loss, "seconds": seconds,
                  "lr": self.optimizer.lr}
        if self.has_val:
            metrics = self.model.evaluate(self.X_val, self.y_val)
            h.val_loss.append(metrics["loss"])
            record["val_loss"] = metrics["loss"]
            if "accuracy" in metrics:
                h.val_accuracy.append(metrics["accuracy"])
                record["val_accuracy"] = metrics["accuracy"]
            else:
                h.val_mse.append(metrics["mse"])
                record["val_mse"] = metrics["mse"]
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)

    def _early_stop(self) -> bool:
        """Track the best held-out score; True when patience has run out."""
        h = self.history
        if not self.has_val:
            return False
        score = h.val_accuracy[-1] if h.val_accuracy else -h.val_mse[-1]
        if score > self.best_score:
            self.best_score = score
            h.best_epoch = h.epoch[-1]
            if self.config.patience:
                self.best_params = self.model.copy_params()
            return False
        if self.config.patience and h.epoch[-1] - h.best_epoch >= self.config.patience:
            h.stopped_early = True
            return True
        return False

    @contextlib.contextmanager
    def _signals(self):
        """SIGINT/SIGTERM ask for a stop after the current step (main thread only).

        A second Ctrl-C while the loop winds down interrupts at once.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            self.request_stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # -- resumable state ---------------------------------------------------------------
    def state(self) -> dict:
        """JSON-able loop state for a checkpoint (the host RNG is keyed by seed/epoch/step)."""
        return {"epoch": self.epoch, "step": self.step, "config": asdict(self.config),
                "rng": {"kind": "numpy.default_rng", "key": [self.config.seed, self.epoch,
                                                             self.step]},
                "history": self.history.as_dict(), "best_score": self.best_score
                if math.isfinite(self.best_score) else None}

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state` (after the model and optimizer were restored)."""
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.history = History.from_dict(state.get("history", {}))
        best = state.get("best_score")
        self.best_score = -math.inf if best is None else float(best)


def fit(model: MLP, X, y, X_val=None, y_val=None, *, callbacks: list[Callback] | None = None,
        optimizer: str | Optimizer = "momentum", **config: Any) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Parameters
    ----------
    model : MLP
    X : array, shape (N, n_inputs)
        Training inputs (NumPy, or already on the model's backend).
    y : array, shape (N,) or (N, n_outputs)
        Class labels (classify), 0/1 (binary) or targets (regress).
    X_val, y_val : arrays, optional
        Held-out split, evaluated after each epoch (and used by early stopping).
    optimizer : {"sgd", "momentum", "adam"} or Optimizer
    **config
        Other :class:`TrainConfig` fields: ``epochs``, ``batch_size``, ``lr``,
        ``momentum``, ``seed``, ``schedule``, ``augment``, ``dropout``, ``patience``.

    Examples
    --------
    >>> history = fit(model, X_train, y_train, X_val, y_val, epochs=5)  # doctest: +SKIP
    """
    if isinstance(optimizer, str):
        config["optimizer"], optimizer = optimizer, None
    try:
        cfg = TrainConfig(**config)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    return Trainer(model, X, y, X_val, y_val, cfg, optimizer, callbacks).run()


