"""``mlp-xp train``: train a network on digits, save it, checkpoint it on Ctrl-C."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..backends import get_backend
from ..calibration import cross_fitted_ece, fit_temperature, reliability
from ..checkpoint import save_model
from ..data import DIGITS, Normalization, load_digits, stratified_split, task_targets
from ..data.shards import Subset
from ..errors import ConfigError, DivergenceError, ModelFileError
from ..fileio import atomic_write_text, check_writable
from ..model import MLP
from ..parallel.stream import report_and_check
from ..train import TrainConfig, Trainer, load_checkpoint, save_checkpoint
from ..train.autoaugment import AugmentChoice, choose_augment
from . import resume
from .console import EXIT_INTERRUPTED, data_source, emit_json, log_stream, resolve
from .progress import EpochLog, ProgressBar, RunLog

__all__ = ["cmd_train"]

N_OUTPUTS = {"classify": 10, "binary": 1, "regress": 1}


def _progress_callbacks(args, log) -> list:
    """A live tqdm bar on a terminal; one plain line per epoch otherwise; none with --quiet."""
    if args.quiet:
        return []
    if not args.json and sys.stderr.isatty():
        try:
            return [ProgressBar(sys.stderr)]
        except ImportError:  # tqdm is an optional extra
            pass
    return [EpochLog(log)]


#: The signals that stop a run with a checkpoint, where the OS has them: Ctrl-C on every
#: OS, SIGTERM (POSIX; Windows defines it but never sends it), Ctrl-Break (Windows only).
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGBREAK")


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer):
    """Ctrl-C (and SIGTERM, Ctrl-Break where they exist) ask ``trainer`` to stop after
    the current step.

    The command owns these signals (the library never takes them over); a
    second Ctrl-C while the run winds down interrupts at once. Signals reach only
    the main thread, so elsewhere nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {sig: signal.getsignal(sig) for sig in sigs}

    def handler(signum, frame):
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _fast_step_possible(args, backend, world) -> bool:
    return (
        backend.kind == "gpu" and args.gpu_step != "generic" and world is None and not args.stream
    )


def _make_trainer(world, args, *arguments, **options) -> Trainer:
    """A :class:`Trainer`, or with ``--distributed`` this rank's data-parallel one."""
    if world is None and not args.stream:
        return Trainer(*arguments, **options)
    from ..parallel import DistributedTrainer, LocalWorld

    watchdog = args.watchdog if world is not None else None
    world = world or LocalWorld()
    return DistributedTrainer(world, *arguments, watchdog=watchdog, stream=args.stream, **options)


def _calibrate(model: MLP, X, y, run_dir, log) -> dict:
    """Fit the softmax temperature on the held-out split; report ECE before and after.

    The accuracy is unchanged (the argmax does not move). The ECE after scaling on the
    split it was fitted on is optimistic, so the cross-fitted figure (``T`` fitted on
    one half, measured on the other) is reported beside it.
    """
    before = model.evaluate(X, y)
    bins_before = reliability(model, X, y)
    model.temperature = fit_temperature(model, X, y)
    after = model.evaluate(X, y)
    record = {
        "temperature": model.temperature,
        "fitted_on": f"held-out split ({before['samples']} digits), minimising its NLL",
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "ece_cross_fitted": cross_fitted_ece(model, X, y),
        "nll_before": before["loss"],
        "nll_after": after["loss"],
    }
    print(
        f"calibration: temperature {model.temperature:.3f} fitted on the held-out split; "
        f"ECE {100 * record['ece_before']:.2f}% -> {100 * record['ece_after']:.2f}% "
        f"({100 * record['ece_cross_fitted']:.2f}% cross-fitted: T from one half, ECE on "
        "the other); predict uses it unless --no-calibration",
        file=log,
    )
    if run_dir is not None:
        curves = {"before": bins_before.to_dict(), "after": reliability(model, X, y).to_dict()}
        atomic_write_text(run_dir / "reliability.json", json.dumps({**record, **curves}, indent=1))
    return record


def _as_run(augment: str) -> dict:
    """The record of a checkpoint written before runs recorded their augmentation."""
    return {"augment": augment, "requested": augment, "dataset": None, "reason": "as recorded"}


def _report_resume(trainer: Trainer, source, planned: int, out, run_dir, log) -> None:
    """Say where the resumed run goes on, how it was extended, and where it writes."""
    print(f"resumed from {source} at epoch {trainer.epoch + 1}, step {trainer.step}", file=log)
    if trainer.config.epochs != planned:
        spe = trainer.steps_per_epoch
        lr = trainer.base_lr * trainer.schedule(trainer.epoch * spe + trainer.step)
        print(
            f"extending the run from {planned} to {trainer.config.epochs} epochs: the rest of "
            f"its {trainer.config.schedule} schedule is stretched to end at epoch "
            f"{trainer.config.epochs}, so the learning rate goes on from {lr:.4g} without a jump",
            file=log,
        )
    where = f"model to {out}" + (f", run log to {run_dir}" if run_dir is not None else "")
    print(f"writing the {where}", file=log)


def cmd_train(args) -> int:
    world = None
    if getattr(args, "distributed", False):
        from ..parallel import launch

        world = launch.start(args)
        try:
            with launch.abort_on_error(world, "train"):
                return _train(args, world)
        except launch.Quiet as quiet:  # rank 0 says why the job ends
            return quiet.code
    return _train(args, None)


def _train(args, world) -> int:
    """The command, as one process or as one rank of ``world`` (only rank 0 writes)."""
    root = world is None or world.is_root
    log: Any = log_stream(args)  # a text stream, or Silent on ranks that do not print
    device = args.device
    if world is not None:
        from ..parallel.launch import Silent, device_for

        log = log if root else Silent()
        device = device_for(device, world)
    backend = get_backend(device)
    print(
        f"device: {backend.name} on {backend.device}"
        + (f" ({backend.note})" if backend.note else ""),
        file=log,
        flush=True,
    )
    checkpoint, extend_to, choice = None, None, None
    if args.resume:
        resume_from = resolve(args.resume)
        checkpoint = load_checkpoint(resume_from, backend)
        model, config = checkpoint.model, checkpoint.config
        config.gpu_step = args.gpu_step  # how this device steps, like --device: ours to choose
        data_info = model.meta.get("data")
        if not isinstance(data_info, dict):
            raise ModelFileError(
                f"{resume_from}: the checkpoint does not record its data (it was not written "
                "by mlp-xp train); resume it from Python with Trainer.restore"
            )
        extend_to = resume.check_flags(args, checkpoint, data_info)
        out, run_dir = resume.outputs(args, resume_from, model.meta.pop("outputs", None))
        normalization = Normalization.from_meta(model.meta.get("normalization"))
        choice = AugmentChoice(**model.meta.get("augmentation", _as_run(config.augment)))
    else:
        run_dir = resolve(args.run_dir) if args.run_dir else None
        out = (
            resolve(args.out)
            if args.out
            else (run_dir / "model.npz" if run_dir else Path("model.npz"))
        )
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            lr=args.lr,
            momentum=args.momentum,
            seed=args.seed,
            schedule=args.schedule,
            warmup_epochs=args.warmup,
            augment=args.augment,  # "auto" is decided below, from the data
            dropout=args.dropout,
            ema=args.ema,
            patience=args.patience,
            gpu_step=args.gpu_step,
        ).validate()
        model = MLP(
            784,
            args.hidden,
            N_OUTPUTS[args.task],
            activation=args.activation,
            task=args.task,
            l2=args.l2,
            backend=backend,
            dtype=args.dtype,
            seed=args.seed,
        )
        if args.positive is not None and args.task != "binary":
            raise ConfigError(f"--positive applies to --task binary only, got --task {args.task}")
        data_info = {
            "source": data_source(args.data),
            "val_fraction": args.val_fraction,
            "split_seed": args.seed,
            "task": args.task,
            "positive": args.positive,
        }
        normalization = DIGITS
    ckpt_path = (run_dir / "checkpoint.npz") if run_dir else out.with_suffix(".ckpt.npz")
    for path in (out, ckpt_path) if root else ():  # somewhere to go before it starts
        check_writable(path)
    # uncompressed IDX files memory-mapped
    digits = load_digits(data_info["source"], image_shape=(28, 28), mapped=True)
    targets = task_targets(digits.labels, data_info["task"], data_info["positive"])
    train_idx, val_idx = stratified_split(
        digits.labels, data_info["val_fraction"], data_info["split_seed"]
    )
    callbacks = _progress_callbacks(args, log) if root else []
    # the training images go to the device as uint8 pixels, scaled per batch (or, with
    # --stream, stay in their memory maps); the held-out split is normalized here
    stream = args.stream
    report_and_check(log, len(train_idx), model.n_outputs, config.batch_size, backend, stream)
    if choice is None:  # from the data: a fingerprint, or a look at a sample of its images
        choice = choose_augment(args.augment, digits)
        config = dataclasses.replace(config, augment=choice.augment)
    images = Subset(digits.images, train_idx) if stream else digits.images[train_idx]
    if _fast_step_possible(args, backend, world):
        images = normalization.apply(images, model.dtype)
    held_out = (normalization.apply(digits.images[val_idx], model.dtype), targets[val_idx])
    trainer = _make_trainer(
        world,
        args,
        model,
        images,
        targets[train_idx],
        *held_out,
        config,
        callbacks=callbacks,
        # uint8 pixels on the device, except for the GPU fast step (it gathers float inputs)
        pixels=None if _fast_step_possible(args, backend, world) else normalization,
    )
    source = digits.source
    del digits
    if checkpoint is not None:
        trainer.restore(checkpoint.optimizer, checkpoint.state)
        planned = trainer.config.epochs
        if extend_to is not None:
            trainer.extend(extend_to)
        _report_resume(trainer, args.resume, planned, out, run_dir, log)
    optimizer = {**trainer.optimizer.hyperparameters(), "lr": trainer.base_lr}
    print(choice.line(), file=log, flush=True)
    meta = {
        "normalization": normalization.to_meta(),
        "data": data_info,
        "augmentation": choice.to_meta(),
        "training": {
            "config": trainer.config.as_dict(),
            "optimizer": optimizer,
            "backend": backend.name,
            "device": backend.device,
        },
    }
    if run_dir is not None and root:
        trainer.callbacks.append(
            RunLog(
                run_dir,
                {
                    "model": str(out.resolve()),
                    "data": data_info,
                    "augmentation": choice.to_meta(),
                    "optimizer": optimizer,
                    "backend": backend.name,
                    "device": backend.device,
                },
            )
        )
    print(
        f"network {'-'.join(map(str, model.layer_sizes))} ({model.n_params:,} parameters), "
        f"{len(train_idx)} training / {len(val_idx)} held-out digits from {source}",
        file=log,
        flush=True,
    )
    try:
        with stop_on_signals(trainer):
            history = trainer.run()
    except DivergenceError:
        if root:
            save_model(out, model, **meta)
        print(f"saved the last good parameters to {out}", file=log)
        raise
    if trainer.interrupted and not root:
        return EXIT_INTERRUPTED
    if trainer.interrupted:
        save_checkpoint(
            ckpt_path, trainer, **meta, outputs=resume.outputs_record(ckpt_path, out, run_dir)
        )
        print(
            f"interrupted at epoch {trainer.epoch + 1}, step {trainer.step}; checkpoint "
            f"saved to {ckpt_path}; continue with: mlp-xp train --resume {ckpt_path}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    meta["training"]["history"] = history.as_dict()
    final = trainer.evaluate_held_out()
    if not root:
        return 0
    if model.task == "classify":  # on the whole held-out split, whatever the ranks
        X_val, y_val = backend.put(held_out)
        meta["calibration"] = _calibrate(model, X_val, y_val, run_dir, log)
        final["ece"] = meta["calibration"]["ece_after"]  # at the temperature saved
    save_model(out, model, **meta)
    if model.task == "regress":
        print(f"held-out MSE: {final['mse']:.4f} ({final['samples']} digits)", file=log)
    else:
        ece = f", ECE {100 * final['ece']:.2f}%" if "ece" in final else ""
        print(
            f"held-out accuracy: {100 * final['accuracy']:.2f}% ({final['samples']} digits){ece}",
            file=log,
        )
    print(f"saved {out}", file=log)
    if args.json:
        emit_json(
            {
                "backend": backend.name,
                "device": backend.device,
                "augment": choice.to_meta(),
                "gpu_step": trainer.runner.name if trainer.runner is not None else None,
                "optimizer": optimizer,
                "epochs": len(history.epoch),
                "epoch_seconds": history.seconds,
                "train_loss": history.train_loss,
                "val_loss": history.val_loss,
                "val_accuracy": final.get("accuracy"),
                "val_mse": final.get("mse"),
                "val_ece": final.get("ece"),
                "calibration": meta.get("calibration"),
                "best_epoch": history.best_epoch,
                "stopped_early": history.stopped_early,
                "model": str(out),
            }
        )
    return 0
