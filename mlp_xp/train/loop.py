"""The training loop: mini-batch gradient descent on an MLP.

What it keeps to: the training set and its encoded targets move to the device
once; each epoch's plan (shuffle, augmentation coefficients, dropout key, learning
rates: :mod:`mlp_xp.train.plan`) is made on the host and sent once; nothing is
copied to the device, back or synchronised inside a step -- the per-step losses
stay on the device and become Python floats once, at the end of the epoch, where
the divergence guard also looks at them.

The step itself is an object (:mod:`mlp_xp.train.step`): the generic step on every
backend, or on CuPy the fast step of :mod:`mlp_xp.gpu` once it has checked itself
against the generic one (``config.gpu_step``). Randomness is keyed by ``(seed,
epoch)`` and sample index, so a run interrupted after any step resumes bit-for-bit
on the same device.

The loop owns no signal handler. Ctrl-C raises :class:`KeyboardInterrupt` as
usual, but only once the step in flight has finished, so the model, optimizer
and :meth:`Trainer.state` always describe a whole number of steps (the command
line catches it, writes a checkpoint and exits 130).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from typing import Any

import numpy as np

from .. import budget
from ..arrays import Array, ArrayLike, to_device
from ..constraints import validate
from ..data.door import check_data
from ..errors import ConfigError, DataError, DivergenceError
from ..model import MLP
from ..optim import Optimizer, make_optimizer
from .augment import make_augmenter
from .averaging import WeightAverage
from .config import TrainConfig
from .history import Callback, History
from .interrupts import hold_ctrl_c
from .plan import EpochPlan, make_plan
from .schedules import Plan
from .state import Snapshot, TrainState
from .step import FASTER_STEPS, GenericStep, StepData

__all__ = ["Trainer", "History", "Callback"]


class Trainer:
    """Mini-batch gradient descent on an :class:`~mlp_xp.model.MLP`.

    Parameters
    ----------
    model : MLP
        Trained in place.
    X, y : arrays
        Training inputs (N, n_inputs) and labels/targets, NumPy or already on
        the model's backend; they are moved to the device once.
    X_val, y_val : arrays, optional
        Held-out split, evaluated after every epoch (and watched by early
        stopping when ``config.patience`` > 0).
    config : TrainConfig, optional
        Hyperparameters; the digit recipe when omitted.
    optimizer : Optimizer, optional
        An optimizer already bound to ``model.params``; by default the one
        ``config.optimizer`` names.
    callbacks : list of Callback, optional
        Called at epoch starts, after each step and at epoch ends.
    image_shape : (H, W) or None
        The shape of one input image, for augmentation; ``None`` for inputs
        that are not images (then ``config.augment`` must be ``"none"``).
    pixels : Normalization, optional
        Keep ``X`` (uint8 pixels) on the device as it is and scale each batch with this
        rule as it is gathered, instead of holding float inputs.
    """

    def __init__(
        self,
        model: MLP,
        X: ArrayLike,
        y: ArrayLike,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        config: TrainConfig | None = None,
        *,
        optimizer: Optimizer | None = None,
        callbacks: list[Callback] | None = None,
        image_shape: tuple[int, int] | None = (28, 28),
        pixels=None,
    ):
        self.model = model
        self.pixels = pixels
        self.backend = model.backend
        # a copy: extend() and the data-parallel trainer write to it, never to the caller's
        self.config = dataclasses.replace(config or TrainConfig()).validate()
        if self.config.gpu_step in ("fast", "graph") and self.backend.name != "cupy":
            raise ConfigError(
                f"gpu_step={self.config.gpu_step!r} needs a CuPy (GPU) model, this one is on "
                f"{self.backend}; use gpu_step='auto' or 'generic'"
            )
        X, y, X_val, y_val = self._admit(model, X, y, X_val, y_val)  # none on the device yet
        # what cannot fit is refused before anything is allocated (uint8 pixels a byte each)
        budget.check_data_on_device(model, self.config, X, X_val, pixels=pixels is not None)
        self.X = self._inputs(X)
        labels = np.int64 if model.task == "classify" else None  # 3.0 is class 3
        self.T = model.targets(self._to_device(y, labels, "training targets y"))  # encoded once
        self.has_val = X_val is not None
        if self.has_val:
            self.X_val = self._to_device(X_val, model.dtype, "held-out inputs X_val")
            self.y_val = self._to_device(y_val, labels, "held-out targets y_val")
        n = self.X.shape[0]
        self.batch_size = self.config.batch_size
        if self.batch_size > n:
            warnings.warn(
                f"batch size {self.batch_size} is larger than the {n} training "
                f"samples; using {n} (full-batch gradient descent)",
                stacklevel=2,
            )
            self.batch_size = n
        self.steps_per_epoch = -(-n // self.batch_size)
        self.optimizer = optimizer or make_optimizer(
            self.config.optimizer, model.params, self.backend, self.config.lr, self.config.momentum
        )
        self.base_lr = self.optimizer.lr
        self.schedule = self._plan()
        self.augmenter = make_augmenter(self.config.augment, image_shape)
        if self.augmenter is not None and (
            image_shape is None or model.n_inputs != image_shape[0] * image_shape[1]
        ):
            raise ConfigError(
                f"augment={self.config.augment!r} needs {image_shape} images as "
                f"inputs, the model has {model.n_inputs}; use augment='none'"
            )
        self.callbacks = list(callbacks or [])
        if self.config.ema and self.config.patience:
            warnings.warn(
                "early stopping keeps the best epoch's raw weights, so the weights' moving "
                "average is not used; pass ema=0 (--ema 0) to say so",
                stacklevel=2,
            )
        self.average = WeightAverage(model, self.config.ema) if self.config.ema else None
        #: everything a step writes (mlp_xp.train.state), and what it reads besides
        self.train_state = TrainState(model, self.optimizer, self.average)
        self.data = StepData(
            self.X, self.T, self.augmenter, self.config.dropout, pixels, self.batch_size
        )
        self.history = History()
        self.best_score = -math.inf
        self.best_params: dict | None = None
        self.interrupted = False
        self.last_loss = None  # device scalar of the latest step (read only when logging)
        self.runner: Any = None  # the step object, chosen at the first epoch (see choose_step)
        self._stop = threading.Event()
        self._ctrl_c = False

    @property
    def epoch(self) -> int:
        """Epochs completed (the state's position)."""
        return self.train_state.epoch

    @property
    def step(self) -> int:
        """Steps completed inside the current epoch (the state's position)."""
        return self.train_state.step

    @property
    def carried(self) -> dict | None:
        """An interrupted epoch's summed loss, samples and seconds so far."""
        return self.train_state.carried

    def _admit(self, model: MLP, X, y, X_val, y_val) -> tuple:
        """The door (:func:`~mlp_xp.data.door.check_data`): the data as accepted, the
        targets as the loss takes them, or one :class:`~mlp_xp.errors.DataError`."""
        return check_data(model, X, y, X_val, y_val)

    def _inputs(self, X):
        """The training inputs on the device: in the model's dtype, or with ``pixels`` (a
        :class:`~mlp_xp.data.Normalization`) as the 0-255 pixels themselves, in uint8 (4x
        less device memory than float32), each batch scaled as it is gathered."""
        if self.pixels is None:
            return self.model.check_input(self._to_device(X, self.model.dtype, "training inputs"))
        if np.asarray(X[:1]).dtype != np.uint8:
            raise DataError(f"pixels= needs uint8 training images, got {np.asarray(X[:1]).dtype}")
        return self.model.check_input(self._to_device(X, np.uint8, "training images"))

    def _to_device(self, a: ArrayLike, dtype: Any, what: str) -> Array:
        """:func:`~mlp_xp.arrays.to_device`, floats in the model's dtype by default."""
        return to_device(self.backend, a, dtype, what, self.model.dtype)

    # -- the loop --------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop after the current step; :meth:`run` then returns."""
        self._stop.set()

    def should_stop(self) -> bool:
        """Whether to stop before the next step (asked once per step; a stop request)."""
        return self._stop.is_set()

    def evaluate_held_out(self) -> dict:
        """The model's metrics on the held-out split (:meth:`~mlp_xp.model.MLP.evaluate`;
        the door checked the split once, so nothing is read back to check it again)."""
        return self.model.evaluate(self.X_val, self.y_val, check=False)

    def run(self) -> History:
        """Train until ``config.epochs`` are done, early stopping, or a stop request.

        Returns
        -------
        History
            ``history.interrupted`` says whether a stop request cut the run short.

        Raises
        ------
        KeyboardInterrupt
            On Ctrl-C, after the step in flight (``self.state()`` is consistent).
        DivergenceError
            The loss became NaN/Inf; the parameters from the start of that
            epoch (the last good ones) are restored first.
        """
        self._stop.clear()  # a run stopped before (Ctrl-C, request_stop) goes on from here
        self._ctrl_c = self.interrupted = self.history.interrupted = False
        # the divergence guard reports non-finite losses itself: no NumPy warnings
        with (
            hold_ctrl_c(self),
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            while self.epoch < self.config.epochs:
                if not self.run_epoch():
                    self.interrupted = self.history.interrupted = True
                    break
                if self._early_stop():
                    break
        if self._ctrl_c:
            raise KeyboardInterrupt
        if not self.interrupted and self.best_params is not None and self.config.patience:
            self.model.set_params(self.best_params)
        elif not self.interrupted and self.average is not None:
            self.average.apply(self.model)  # the averaged weights are the result
        return self.history

    def plan(self, epoch: int) -> EpochPlan:
        """The plan of (0-based) ``epoch``: shuffle, augmentation, dropout key, rates."""
        steps = self.steps_per_epoch
        return make_plan(
            self.config.seed,
            epoch,
            self.X.shape[0],
            self.batch_size,
            self.augmenter,
            lambda s: self.base_lr * self.schedule(epoch * steps + s),
        )

    def choose_step(self, plan: EpochPlan):
        """The step this run takes (the loop asks at its first epoch): the generic step, or
        on CuPy the fast step once it has checked itself against it on ``plan``."""
        generic = GenericStep(self.train_state, self.data)
        chooser = FASTER_STEPS.get(self.backend.name)
        if chooser is None or self.config.gpu_step == "generic":
            return generic
        return chooser(self.train_state, self.data, self.config.gpu_step, generic, plan)

    def run_epoch(self) -> bool:
        """Train one epoch (or the rest of an interrupted one) and record it.

        Returns False when a stop was requested before the epoch finished.
        """
        model, state, e = self.model, self.train_state, self.epoch
        plan = self.plan(e)
        if self.runner is None:
            self.runner = self.choose_step(plan)
        snapshot = state.take()  # what a diverged epoch is undone to
        for cb in self.callbacks:
            cb.on_epoch_start(self, e + 1, self.steps_per_epoch)
        self.runner.begin_epoch(state, plan, state.step)
        self.backend.synchronize()
        t0 = time.perf_counter()
        while state.step < self.steps_per_epoch:
            if self.should_stop():
                state.carried = self._so_far(t0, snapshot)  # what a resumed run adds to
                return False
            self.last_loss = self.runner(state, plan, state.step)
            state.advance(plan, state.step)
            for cb in self.callbacks:
                cb.on_step(self, state.step)
        so_far = self._so_far(t0, snapshot)
        samples = so_far["samples"]
        penalty = float(model.penalty()) if model.l2 else 0.0
        mean = so_far["loss_sum"] / samples if samples else math.nan
        self._record(e + 1, mean + penalty, so_far["seconds"])
        state.next_epoch()
        return True

    def _so_far(self, t0: float, snapshot: Snapshot) -> dict:
        """The current epoch's summed loss, samples and seconds, with any part of it an
        interrupted run did before (:attr:`carried`); a non-finite loss raises
        :class:`DivergenceError` with ``snapshot``, the whole state the steps began from
        (parameters, optimizer slots and counters, the weights' average, the position),
        back, so a retry at a lower rate starts where the epoch did.
        """
        self.backend.synchronize()
        seconds = time.perf_counter() - t0
        losses = self.runner.end_epoch()
        if losses.bad_step is not None:
            self.train_state.put_back(snapshot)
            raise DivergenceError(
                f"training diverged: the loss became {losses.bad_value} at epoch "
                f"{self.epoch + 1}, step {losses.bad_step + 1}; the state from before that "
                f"epoch was kept; try a lower learning rate (now {self.base_lr:g})",
                epoch=self.epoch + 1,
                step=losses.bad_step + 1,
            )
        so_far = dict(self.carried or {"loss_sum": 0.0, "samples": 0, "seconds": 0.0})
        if losses.samples:
            so_far["loss_sum"] += losses.mean * losses.samples
            so_far["samples"] += losses.samples
        so_far["seconds"] += seconds
        return so_far

    def _record(self, epoch: int, train_loss: float, seconds: float) -> None:
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "seconds": seconds,
            "lr": self.optimizer.lr,
        }
        if self.has_val:
            metrics = self.evaluate_held_out()
            record["val_loss"] = metrics["loss"]
            record["val_mse" if "mse" in metrics else "val_accuracy"] = metrics.get(
                "mse", metrics.get("accuracy")
            )
        for key, value in record.items():
            getattr(self.history, key).append(value)
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

    def _plan(self, stretches=()) -> Plan:
        spe = self.steps_per_epoch
        cfg = self.config
        return Plan(cfg.schedule, cfg.epochs * spe, cfg.warmup_epochs * spe, stretches)

    def extend(self, epochs: int) -> None:
        """Train to ``epochs`` instead of ``config.epochs``, from where the run is now.

        What is left of the learning-rate schedule is stretched over the longer
        run (:func:`~mlp_xp.train.schedules.stretch`): the rate goes on from its
        current value without a jump and ends where it would have, at the new
        last epoch. :meth:`state` records the stretch, so a resumed run keeps it.
        """
        epochs = validate("epochs", epochs)
        if epochs <= self.config.epochs:
            raise ConfigError(
                f"a run can only be extended: {epochs} epochs are not more than its "
                f"{self.config.epochs}"
            )
        spe = self.steps_per_epoch
        self.schedule.extend(self.epoch * spe + self.step, epochs * spe)
        self.config.epochs = epochs

    # -- resumable state ---------------------------------------------------------------
    def state(self) -> dict:
        """JSON-able loop state for a checkpoint (the randomness is keyed by seed and epoch)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "config": self.config.as_dict(),
            "rng": {"kind": "epoch-plan", "key": [self.config.seed, self.epoch], "step": self.step},
            "history": self.history.as_dict(),
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "schedule_stretches": self.schedule.stretches,
            "partial_epoch": self.carried,
        }

    def restore(self, optimizer_state: tuple[dict, dict], state: dict) -> None:
        """Continue from a checkpoint: the optimizer's ``state_dict()`` and :meth:`state`,
        with the host arrays :func:`~mlp_xp.train.load_checkpoint` adds to it (early
        stopping's ``best_params``, the weights' moving ``average`` with ``config.ema``)."""
        self.train_state.load_host(optimizer_state, state, state.get("average"))
        self.history = History.from_dict(state.get("history", {}))
        self.history.interrupted = False  # it was, when saved; this run goes on
        best = state.get("best_score")
        self.best_score = -math.inf if best is None else float(best)
        self.schedule = self._plan(state.get("schedule_stretches") or ())
        best = state.get("best_params")  # host arrays (load_checkpoint reads them)
        self.best_params = None
        if best is not None:
            host = self.model.layout.pack_host(best, self.model.dtype)
            with self.backend.scope():
                self.best_params = self.model.layout.views(self.backend.xp, self.backend.put(host))
