"""``mlp-xp train``: train a network on digits, save it, checkpoint it on Ctrl-C."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import threading
from typing import Any

from ..backends import get_backend
from ..calibration import cross_fitted_ece, fit_temperature, reliability
from ..checkpoint import save_model
from ..data import load_digits, recorded_split, task_targets
from ..data.cache import stream_note
from ..data.shards import Subset
from ..errors import DivergenceError, OutputError
from ..fileio import atomic_write_text, check_writable, output_path
from ..model import MLP
from ..parallel.stream import report_and_check
from ..train import Trainer, save_checkpoint
from ..train.autoaugment import choose_augment
from . import resume, rundir
from .console import EXIT_INTERRUPTED, emit_json, log_stream, resolve
from .finish import (
    check_space,
    failure,
    output_sizes,
    raise_failed,
    save_final,
    save_or_fallback,
    save_without_replacing,
)
from .progress import EpochLog, ProgressBar, RunLog
from .ranks import record_ranks
from .spec import RunSpec, from_checkpoint, from_flags

__all__ = ["cmd_train"]


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
    """Whether CuPy's fast step may run (a PyTorch GPU takes the generic step, uint8 pixels)."""
    return (
        backend.name == "cupy" and args.gpu_step != "generic" and world is None and not args.stream
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
    log, backend = _device(args, world, root)
    spec = from_checkpoint(args, backend) if args.resume else from_flags(args, backend)
    resumed = resolve(args.resume) if args.resume else None
    if root:  # somewhere to go first, with room for what the run writes
        output_path(spec.out, inputs=[resumed, *_files_in(spec.data["source"])])
        for path in (spec.out, spec.checkpoint_path):
            check_writable(output_path(path))
        check_space(output_sizes(spec))
    with rundir.claim(spec.run_dir if root else None, spec.out, resumed, args.overwrite):
        return _run(spec, args, backend, world, log)


def _run(spec: RunSpec, args, backend, world, log) -> int:
    """Build, train and finish the run ``spec`` describes."""
    root = world is None or world.is_root
    trainer, held_out = _build(spec, args, backend, world, log)
    meta = _meta(spec, trainer, backend)
    if world is not None:
        record_ranks(spec, trainer, meta, log)
    if spec.run_dir is not None and root:
        trainer.callbacks.append(RunLog(spec.run_dir, _run_record(spec, meta)))
    initial = _held_out_loss(spec.model, held_out, backend) if root else None
    try:
        with stop_on_signals(trainer):
            history = trainer.run()
    except DivergenceError:
        if root:
            saved = save_without_replacing(_saver(spec, meta), spec.out)
            print(f"saved the last good parameters to {saved}", file=log)
        raise
    if trainer.interrupted:
        return _interrupted(spec, trainer, meta, root)
    meta["training"]["history"] = history.as_dict()
    final = trainer.evaluate_held_out()
    if not root:
        return 0
    reason = failure(spec.model.task, final, held_out[1], initial)
    if reason is not None:
        saved = save_without_replacing(_saver(spec, meta), spec.out)
        raise_failed(reason, trainer.base_lr, saved, spec.out)
    if spec.model.task == "classify":  # on the whole held-out split, whatever the ranks
        X_val, y_val = backend.put(held_out)
        meta["calibration"] = _calibrate(spec.model, X_val, y_val, spec.run_dir, log)
        final["ece"] = meta["calibration"]["ece_after"]  # at the temperature saved
    save_final(_saver(spec, meta), spec.out)
    _remove_resumed_checkpoint(args)
    if world is not None:  # the epochs' checkpoints are spent
        with contextlib.suppress(OSError):
            spec.checkpoint_path.unlink()
    _report(spec, final, log)
    if args.json:
        emit_json(_summary(spec, trainer, history, final, meta))
    return 0


def _files_in(source: str) -> list:
    """The files of a ``--data`` folder (none for the embedded digits): the run's inputs."""
    folder = resolve(source)
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def _saver(spec: RunSpec, meta: dict):
    return lambda path: save_model(path, spec.model, **meta)


def _held_out_loss(model: MLP, held_out: tuple, backend) -> float | None:
    """The untrained (or resumed) network's held-out loss: what a blown-up run is
    measured against."""
    if len(held_out[1]) == 0:
        return None
    return float(model.evaluate(*backend.put(held_out), check=False)["loss"])


def _remove_resumed_checkpoint(args) -> None:
    """A finished resumed run's checkpoint is spent: a later --resume would redo the run."""
    if args.resume:
        with contextlib.suppress(OSError):
            resolve(args.resume).unlink()


def _device(args, world, root: bool) -> tuple[Any, Any]:
    """The log stream (silent on ranks that do not print) and the backend, said in a line."""
    log: Any = log_stream(args)
    device = args.device
    if world is not None:
        from ..parallel.launch import Silent, device_for

        log = log if root else Silent()
        device = device_for(device, world)
    backend = get_backend(device)
    note = f" ({backend.note})" if backend.note else ""
    print(f"device: {backend.name} on {backend.device}{note}", file=log, flush=True)
    return log, backend


def _build(spec: RunSpec, args, backend, world, log) -> tuple[Trainer, tuple]:
    """Read the data (raw IDX files memory-mapped), split it, decide ``--augment auto``,
    and make the trainer; returns it and the held-out split (normalized, on the host)."""
    model, norm = spec.model, spec.normalization
    # with --stream, gzip'd images are decompressed once into the cache and mapped from there
    digits = load_digits(spec.data["source"], image_shape=(28, 28), mapped=True, stream=args.stream)
    if args.stream and (note := stream_note(digits.files)):
        print(note, file=log, flush=True)
    targets = task_targets(digits.labels, spec.data["task"], spec.data["positive"])
    train_idx, val_idx = recorded_split(digits.labels, spec.data)
    report_and_check(log, len(train_idx), model.n_outputs, spec.config.batch_size, backend,
                     args.stream)  # fmt: skip
    if spec.choice is None:  # from the data: a fingerprint, or a look at a sample of its images
        spec.choice = choose_augment(args.augment, digits)
        spec.config = dataclasses.replace(spec.config, augment=spec.choice.augment)
    # uint8 pixels on the device, scaled per batch (with --stream, left in their memory
    # maps), except for the GPU fast step, which gathers float inputs
    fast = _fast_step_possible(args, backend, world)
    images = Subset(digits.images, train_idx) if args.stream else digits.images[train_idx]
    images = norm.apply(images, model.dtype) if fast else images
    held_out = (norm.apply(digits.images[val_idx], model.dtype), targets[val_idx])
    callbacks = _progress_callbacks(args, log) if world is None or world.is_root else []
    trainer = _make_trainer(world, args, model, images, targets[train_idx], *held_out,
                            spec.config, callbacks=callbacks,
                            pixels=None if fast else norm)  # fmt: skip
    if spec.checkpoint is not None:
        trainer.restore(spec.checkpoint.optimizer, spec.checkpoint.state)
        planned = trainer.config.epochs
        if spec.extend_to is not None:
            trainer.extend(spec.extend_to)
        _report_resume(trainer, args.resume, planned, spec.out, spec.run_dir, log)
    print(spec.choice.line(), file=log, flush=True)
    print(
        f"network {'-'.join(map(str, model.layer_sizes))} ({model.n_params:,} parameters), "
        f"{len(train_idx)} training / {len(val_idx)} held-out digits from {digits.source}",
        file=log,
        flush=True,
    )
    return trainer, held_out


def _meta(spec: RunSpec, trainer: Trainer, backend) -> dict:
    """What the model file (and a checkpoint) records of the run."""
    assert spec.choice is not None  # decided in _build
    return {
        "normalization": spec.normalization.to_meta(),
        "data": spec.data,
        "augmentation": spec.choice.to_meta(),
        "training": {
            "config": trainer.config.as_dict(),
            "optimizer": {**trainer.optimizer.hyperparameters(), "lr": trainer.base_lr},
            "backend": backend.name,
            "device": backend.device,
        },
    }


def _run_record(spec: RunSpec, meta: dict) -> dict:
    """The run folder's record of the run (``history.json``'s header)."""
    training = meta["training"]
    return {
        "model": str(spec.out.resolve()),
        "data": meta["data"],
        "augmentation": meta["augmentation"],
        **{key: training[key] for key in ("optimizer", "backend", "device")},
        **({"distributed": training["distributed"]} if "distributed" in training else {}),
    }


def _interrupted(spec: RunSpec, trainer: Trainer, meta: dict, root: bool) -> int:
    """Ctrl-C or SIGTERM: rank 0 saves a checkpoint and says how to go on; exit 130.

    A checkpoint that cannot be written goes to a fallback path; where none can be
    written, the error names the step that is lost."""
    if root:
        where = f"epoch {trainer.epoch + 1}, step {trainer.step}"

        def save(path):
            outputs = resume.outputs_record(path, spec.out, spec.run_dir)
            save_checkpoint(path, trainer, **meta, outputs=outputs)

        try:
            path, error = save_or_fallback(save, spec.checkpoint_path)
        except OutputError as exc:
            raise OutputError(
                f"interrupted at {where}, but its checkpoint could not be written ({exc}); "
                "the run's progress is lost"
            ) from None
        if error is not None:
            print(f"mlp-xp train: warning: {error}", file=sys.stderr)
        print(
            f"interrupted at {where}; checkpoint saved to {path}; continue with: "
            f"mlp-xp train --resume {path}",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED


def _report(spec: RunSpec, final: dict, log) -> None:
    """The held-out figure and where the model went."""
    if spec.model.task == "regress":
        print(f"held-out MSE: {final['mse']:.4f} ({final['samples']} digits)", file=log)
    else:
        ece = f", ECE {100 * final['ece']:.2f}%" if "ece" in final else ""
        print(
            f"held-out accuracy: {100 * final['accuracy']:.2f}% ({final['samples']} digits){ece}",
            file=log,
        )
    print(f"saved {spec.out}", file=log)


def _summary(spec: RunSpec, trainer: Trainer, history, final: dict, meta: dict) -> dict:
    """``--json``'s last line."""
    training = meta["training"]
    return {
        "backend": training["backend"],
        "device": training["device"],
        "augment": meta["augmentation"],
        "gpu_step": trainer.runner.name if trainer.runner is not None else None,
        "optimizer": training["optimizer"],
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
        "model": str(spec.out),
    }
