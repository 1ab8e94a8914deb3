"""What each ``mlp-xp`` subcommand does (the parser lives in :mod:`mlp_xp.cli`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .backend import available_backends, get_backend
from .checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from .cli import EXIT_INTERRUPTED, emit_json, log_stream, resolve
from .data import load_array_file, load_digits, scale_images, stratified_split
from .errors import ConfigError, DataError, DivergenceError
from .model import MLP
from .progress import EpochLog, ProgressBar, RunLog
from .train import TrainConfig, Trainer

NORMALIZATION = {"scale": 1.0 / 255.0, "image_shape": [28, 28], "ink": "bright on dark"}


# --------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------

def cmd_devices(args) -> int:
    rows = available_backends()
    best = get_backend("auto")
    if args.json:
        emit_json({"devices": rows, "auto": best.name})
        return 0
    for row in rows:
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        label = row["device"] or row["kind"]
        print(f"{row['kind']:4s} {row['backend']:6s} {label}  [{state}]")
    print(f"--device auto uses: {best.name} ({best.kind})")
    return 0


# --------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------

def task_targets(labels: np.ndarray, task: str, positive: int | None) -> np.ndarray:
    """Digit labels turned into what a task learns: classes, 0/1, or the value."""
    if task == "classify":
        return labels
    if task == "binary":
        if positive is None or not 0 <= positive <= 9:
            raise ConfigError("--task binary needs --positive DIGIT (0-9)")
        return (labels == positive).astype(np.int64)
    return labels.astype(np.float64)


def _n_outputs(task: str) -> int:
    return {"classify": 10, "binary": 1, "regress": 1}[task]


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


def _train_config(args) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                       lr=args.lr, momentum=args.momentum, seed=args.seed,
                       schedule=args.schedule, warmup_epochs=args.warmup, augment=args.augment,
                       dropout=args.dropout, patience=args.patience)


def cmd_train(args) -> int:
    log = log_stream(args)
    backend = get_backend(args.device)
    print(f"device: {backend.name} on {backend.device}"
          + (f" ({backend.note})" if backend.note else ""), file=log, flush=True)
    run_dir = resolve(args.run_dir) if args.run_dir else None
    out = resolve(args.out) if args.out else (run_dir / "model.npz" if run_dir
                                             else Path("model.npz"))
    ckpt_path = (run_dir / "checkpoint.npz") if run_dir else out.with_suffix(".ckpt.npz")

    data_info = {"source": args.data, "val_fraction": args.val_fraction,
                 "split_seed": args.seed, "task": args.task, "positive": args.positive}
    state = None
    if args.resume:
        model, opt_scalars, opt_arrays, state = load_checkpoint(resolve(args.resume), backend)
        data_info = model.meta.get("data", data_info)
        config = TrainConfig(**state["config"])
    else:
        config = _train_config(args)
        model = MLP(784, args.hidden, _n_outputs(args.task), activation=args.activation,
                    task=args.task, l2=args.l2, backend=backend, dtype=args.dtype,
                    seed=args.seed)
    digits = load_digits(data_info["source"], "train")
    targets = task_targets(digits.labels, data_info["task"], data_info["positive"])
    train_idx, val_idx = stratified_split(digits.labels, data_info["val_fraction"],
                                          data_info["split_seed"])
    callbacks = _progress_callbacks(args, log)
    if run_dir is not None:
        callbacks.append(RunLog(run_dir, {"model": str(out.resolve()), "data": data_info,
                                          "backend": backend.name, "device": backend.device}))
    # scale each split on its own: one float copy of the pixels in memory, not two
    trainer = Trainer(model, scale_images(digits.images[train_idx], model.dtype),
                      targets[train_idx], scale_images(digits.images[val_idx], model.dtype),
                      targets[val_idx], config, callbacks=callbacks)
    source = digits.source
    del digits
    if state is not None:
        trainer.optimizer.load_state_dict(opt_scalars, opt_arrays, backend)
        trainer.load_state(state)
        print(f"resumed from {args.resume} at epoch {trainer.epoch + 1}, step {trainer.step}",
              file=log)
    print(f"network {'-'.join(map(str, model.layer_sizes))} ({model.n_params:,} parameters), "
          f"{len(train_idx)} training / {len(val_idx)} held-out digits from {source}",
          file=log, flush=True)
    meta = {"normalization": NORMALIZATION, "data": data_info,
            "training": {"config": vars(config).copy(), "backend": backend.name,
                         "device": backend.device}}
    try:
        history = trainer.run()
    except DivergenceError:
        save_model(out, model, **meta)
        print(f"saved the last good parameters to {out}", file=log)
        raise
    if trainer.interrupted:
        save_checkpoint(ckpt_path, model, trainer.optimizer, trainer.state(), **meta)
        print(f"interrupted at epoch {trainer.epoch + 1}, step {trainer.step}; checkpoint "
              f"saved to {ckpt_path}; continue with: mlp-xp train --resume {ckpt_path}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    meta["training"]["history"] = history.as_dict()
    save_model(out, model, **meta)
    final = model.evaluate(trainer.X_val, trainer.y_val)
    if model.task == "regress":
        print(f"held-out MSE: {final['mse']:.4f} ({final['samples']} digits)", file=log)
    else:
        print(f"held-out accuracy: {100 * final['accuracy']:.2f}% ({final['samples']} digits)",
              file=log)
    print(f"saved {out}", file=log)
    if args.json:
        emit_json({"backend": backend.name, "device": backend.device,
                   "epochs": len(history.epoch), "epoch_seconds": history.seconds,
                   "train_loss": history.train_loss, "val_loss": history.val_loss,
                   "val_accuracy": final.get("accuracy"), "val_mse": final.get("mse"),
                   "best_epoch": history.best_epoch, "stopped_early": history.stopped_early,
                   "model": str(out)})
    return 0


# --------------------------------------------------------------------------
# evaluate / predict
# --------------------------------------------------------------------------

def cmd_evaluate(args) -> int:
    backend = get_backend(args.device)
    model = load_model(resolve(args.model), backend)
    info = model.meta.get("data") or {}
    source = args.data or info.get("source", "mnist-5k")
    if args.split == "test":
        digits = load_digits(source, "test")
        idx = np.arange(len(digits))
    else:
        digits = load_digits(source, "train")
        train_idx, val_idx = stratified_split(digits.labels, info.get("val_fraction", 0.2),
                                              info.get("split_seed", 0))
        idx = train_idx if args.split == "train" else val_idx
    targets = task_targets(digits.labels, model.task, info.get("positive"))
    X = backend.asarray(scale_images(digits.images[idx], model.dtype))
    y = backend.asarray(targets[idx])
    result = model.evaluate(X, y)
    result.update(split=args.split, backend=backend.name, device=backend.device,
                  data=str(source))
    if args.json:
        emit_json(result)
    else:
        metric = (f"accuracy {100 * result['accuracy']:.2f}%" if "accuracy" in result
                  else f"MSE {result['mse']:.4f}")
        print(f"{args.split}: {metric}  loss {result['loss']:.4f}  "
              f"({result['samples']} samples from {source}, {backend.name})")
    return 0


def _images_from(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                               ".webp"):
        from .images import load_digit_image
        return load_digit_image(path)[None]
    return load_array_file(path)


def cmd_predict(args) -> int:
    backend = get_backend(args.device)
    model = load_model(resolve(args.model), backend)
    if model.task != "classify" or model.n_inputs != 784:
        raise DataError("predict needs a 784-input digit classifier (task 'classify')")
    results = []
    for name in args.inputs:
        images = _images_from(resolve(name))
        X = backend.asarray(scale_images(images, model.dtype))
        model.check_input(X)
        probs = backend.to_numpy(model.predict_proba(X)).astype(np.float64)
        for i, row in enumerate(probs):
            top = np.argsort(-row, kind="stable")[:3]
            label = name if len(probs) == 1 else f"{name}[{i}]"
            results.append({"input": label, "digit": int(top[0]),
                            "probability": float(row[top[0]]),
                            "top3": [{"digit": int(k), "probability": float(row[k])}
                                     for k in top]})
    if args.json:
        emit_json(results)
    else:
        for r in results:
            alts = ", ".join(f"{t['digit']} {100 * t['probability']:.1f}%" for t in r["top3"])
            print(f"{r['input']}: {r['digit']} ({100 * r['probability']:.1f}%)  top-3: {alts}")
    return 0




# --------------------------------------------------------------------------
# perceptron
# --------------------------------------------------------------------------

TOY_TABLES = {"and": [0, 0, 0, 1], "or": [0, 1, 1, 1], "xor": [0, 1, 1, 0]}


def cmd_perceptron(args) -> int:
    from .perceptron import perceptron

    if args.toy:
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        y = np.array(TOY_TABLES[args.toy])
        what = f"{args.toy.upper()} truth table"
    else:
        try:
            a, b = (int(v) for v in args.digits.split(","))
        except ValueError:
            raise ConfigError(f"--digits needs two digits like 0,1, got {args.digits!r}") from None
        if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
            raise ConfigError(f"--digits needs two different digits 0-9, got {args.digits!r}")
        digits = load_digits(args.data, "train")
        keep = (digits.labels == a) | (digits.labels == b)
        X = scale_images(digits.images[keep], "float64")
        y = (digits.labels[keep] == b).astype(np.int64)
        what = f"{keep.sum()} digits, {a} (-1) vs {b} (+1)"
    result = perceptron(X, y, lr=args.lr, max_epochs=args.max_epochs, backend=args.device)
    accuracy = float(np.mean(result.predict(X) == np.where(y > 0, 1, -1)))
    if args.json:
        emit_json({"data": what, "converged": result.converged, "epochs": result.epochs,
                   "mistakes": result.mistakes, "train_accuracy": accuracy})
    else:
        print(f"perceptron on {what}: {result.message()}; training accuracy "
              f"{100 * accuracy:.1f}%")
    return 0


# --------------------------------------------------------------------------
# plot / download
# --------------------------------------------------------------------------

def cmd_plot(args) -> int:
    from . import plots

    run_dir = resolve(args.run_dir)
    hist_path = run_dir / "history.json"
    if not hist_path.is_file():
        raise DataError(f"{run_dir}: no history.json (train with --run-dir {run_dir} first)")
    try:
        info = json.loads(hist_path.read_text(encoding="utf-8"))
        history = info["history"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{hist_path}: not a history file written by mlp-xp") from None
    written = [plots.learning_curves(history, run_dir / "learning_curves.png",
                                     f"learning curves ({info.get('device', '')})")]
    model_path = Path(info.get("model", ""))
    if model_path.is_file():
        backend = get_backend(args.device or "cpu")
        model = load_model(model_path, backend)
        data = info.get("data") or {}
        if model.task == "classify":
            digits = load_digits(data.get("source", "mnist-5k"), "train")
            _, val_idx = stratified_split(digits.labels, data.get("val_fraction", 0.2),
                                          data.get("split_seed", 0))
            X = backend.asarray(scale_images(digits.images[val_idx], model.dtype))
            probs = backend.to_numpy(model.predict_proba(X)).astype(np.float64)
            true = digits.labels[val_idx]
            written.append(plots.confusion_matrix(true, probs.argmax(axis=1),
                                                  run_dir / "confusion_matrix.png"))
            written.append(plots.worst_digits(digits.images[val_idx], true, probs,
                                              run_dir / "worst_digits.png"))
    else:
        print(f"note: model {model_path} not found; skipped the confusion matrix and worst "
              "digits", file=sys.stderr)
    bench_path = run_dir / "bench.json"
    if bench_path.is_file():
        try:
            bench = json.loads(bench_path.read_text(encoding="utf-8"))
        except ValueError:
            raise DataError(f"{bench_path}: not valid JSON") from None
        written.append(plots.bench_plot(bench, run_dir / "bench.png"))
    else:
        print(f"note: no {bench_path} (write one with: mlp-xp bench --json > {bench_path}); "
              "skipped the benchmark plot", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_download(args) -> int:
    from .download import download

    folder = resolve(args.dir) if args.dir else Path("data") / args.dataset
    download(args.dataset, folder, log=lambda line: print(line, flush=True))
    print(f"ready: mlp-xp train --data {folder}")
    return 0


def cmd_bench(args) -> int:
    from .bench import format_table, run_bench

    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    for d in devices:
        if d not in ("cpu", "gpu"):
            raise ConfigError(f"unknown device {d!r} in --devices: use cpu and/or gpu")
    if args.samples < 1 or args.repeats < 1:
        raise ConfigError("--samples and --repeats must be positive")
    log = log_stream(args)
    result = run_bench(devices, args.batch_sizes, args.samples, args.repeats, args.data,
                       not args.no_augment_cost, log=lambda s: print(s, file=log, flush=True))
    print(format_table(result), file=log)
    if args.plot:
        from .plots import bench_plot
        print(f"wrote {bench_plot(result, resolve(args.plot))}", file=log)
    if args.json:
        emit_json(result)
    return 0
