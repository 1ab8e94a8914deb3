"""What each ``mlp-xp`` subcommand does: one function per command (``train`` in
:mod:`mlp_xp.cli.train`), registered in :data:`COMMANDS` for :func:`mlp_xp.cli.main`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import available_backends, get_backend
from ..calibration import reliability
from ..checkpoint import load_model
from ..data import (
    Normalization,
    blank_images,
    load_array_file,
    load_digits,
    recorded_split,
    scale_images,
    task_targets,
)
from ..data.plausible import weigh
from ..data.predictions import prediction as _prediction
from ..data.predictions import weighs_digits
from ..devices import parse_device
from ..errors import ConfigError, DataError, NoDigitError
from ..fileio import output_path
from .console import emit_json, log_stream, resolve
from .serve import cmd_serve
from .train import cmd_train

# --------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------


def cmd_devices(args) -> int:
    rows = available_backends()
    best = get_backend("auto")
    if args.json:
        emit_json({"devices": rows, "auto": best.name, "auto_device": best.device})
        return 0
    for row in rows:
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        label = row["device"] or row.get("type") or row["kind"]
        if row.get("memory_bytes"):
            label += (
                f" {row['name']}, {row['memory_bytes'] / 2**30:.1f} GiB, "
                f"compute capability {row['compute_capability']}"
            )
        elif row.get("name"):
            label += f" ({row['name']})"
        print(f"{row['kind']:4s} {row['backend']:6s} {label}  [{state}]")
    why = f"; {best.note}" if best.note else ""
    print(f"--device auto uses: {best.name} ({best.device}){why}")
    return 0


# --------------------------------------------------------------------------
# evaluate / predict
# --------------------------------------------------------------------------


def cmd_evaluate(args) -> int:
    backend = get_backend(args.device)
    model = load_model(resolve(args.model), backend)
    if args.no_calibration:
        model.temperature = 1.0
    info = model.meta.get("data") or {}
    source = args.data or info.get("source", "mnist-5k")
    if args.split == "test":
        digits = load_digits(source, "test", image_shape=(28, 28))
        idx = np.arange(len(digits))
    else:
        digits = load_digits(source, "train", image_shape=(28, 28))
        train_idx, val_idx = recorded_split(digits.labels, info)
        idx = train_idx if args.split == "train" else val_idx
    targets = task_targets(digits.labels, model.task, info.get("positive"))
    normalization = Normalization.from_meta(model.meta.get("normalization"))
    X, y = backend.put((normalization.apply(digits.images[idx], model.dtype), targets[idx]))
    result = model.evaluate(X, y)
    result.update(
        temperature=model.temperature,
        split=args.split,
        backend=backend.name,
        device=backend.device,
        data=str(source),
    )
    if args.json:
        emit_json(result)
    else:
        metric = (
            f"accuracy {100 * result['accuracy']:.2f}%"
            if "accuracy" in result
            else f"MSE {result['mse']:.4f}"
        )
        ece = f"  ECE {100 * result['ece']:.2f}% (15 bins)" if "ece" in result else ""
        print(
            f"{args.split}: {metric}  loss {result['loss']:.4f}{ece}  "
            f"({result['samples']} samples from {source}, {backend.name}; "
            f"temperature {model.temperature:.3g})"
        )
    return 0


def _images_from(path: Path) -> tuple[np.ndarray, list | None]:
    """The images of a file, and for a photo what its crop to the ink measured."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"):
        from ..data.images import load_digit_image

        info: dict = {}
        return load_digit_image(path, info)[None], [info]
    return load_array_file(path), None


def cmd_predict(args) -> int:
    backend = get_backend(args.device)
    model = load_model(resolve(args.model), backend)
    if args.no_calibration:
        model.temperature = 1.0
    if model.task != "classify" or model.n_inputs != 784:
        raise DataError("predict needs a 784-input digit classifier (task 'classify')")
    normalization = Normalization.from_meta(model.meta.get("normalization"))
    digits = weighs_digits(model.meta)
    results = []
    for name in args.inputs:
        try:
            images, source = _images_from(resolve(name))
        except NoDigitError:
            results.append(_prediction(name, None, {}, digits))
            continue
        blank = blank_images(images, name)
        X = backend.put(normalization.apply(images, model.dtype, name))
        probs = backend.get(model.predict_proba(X)).astype(np.float64)
        evidence = weigh(images, source, name)  # is each one plausibly a digit at all?
        for i, row in enumerate(probs):
            label = name if len(probs) == 1 else f"{name}[{i}]"
            results.append(_prediction(label, None if blank[i] else row, evidence[i], digits))
    if args.json:
        emit_json(results)
        return 0
    for r in results:
        if r["digit"] is None:
            print(f"{r['input']}: {r['note']}")
            continue
        alts = ", ".join(f"{t['digit']} {100 * t['probability']:.1f}%" for t in r["top3"])
        print(f"{r['input']}: {r['digit']} ({100 * r['probability']:.1f}%)  top-3: {alts}")
    return 0


# --------------------------------------------------------------------------
# perceptron
# --------------------------------------------------------------------------

TOY_TABLES = {"and": [0, 0, 0, 1], "or": [0, 1, 1, 1], "xor": [0, 1, 1, 0]}


def cmd_perceptron(args) -> int:
    from ..perceptron import perceptron

    if args.toy and args.digits is not None:
        raise ConfigError(
            f"--toy {args.toy} and --digits {args.digits} name two different data sets: give one"
        )
    if args.toy:
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        y = np.array(TOY_TABLES[args.toy])
        what = f"{args.toy.upper()} truth table"
    else:
        try:
            a, b = (int(v) for v in (args.digits or "0,1").split(","))
        except ValueError:
            raise ConfigError(f"--digits needs two digits like 0,1, got {args.digits!r}") from None
        if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
            raise ConfigError(f"--digits needs two different digits 0-9, got {args.digits!r}")
        digits = load_digits(args.data, "train", image_shape=(28, 28))
        keep = (digits.labels == a) | (digits.labels == b)
        X = scale_images(digits.images[keep], "float64")
        y = (digits.labels[keep] == b).astype(np.int64)
        what = f"{keep.sum()} digits, {a} (-1) vs {b} (+1)"
    result = perceptron(X, y, lr=args.lr, max_epochs=args.max_epochs, backend=args.device)
    accuracy = float(np.mean(result.predict(X) == np.where(y > 0, 1, -1)))
    if args.json:
        emit_json(
            {
                "data": what,
                "converged": result.converged,
                "epochs": result.epochs,
                "mistakes": result.mistakes,
                "train_accuracy": accuracy,
            }
        )
    else:
        print(f"perceptron on {what}: {result.message()}; training accuracy {100 * accuracy:.1f}%")
    return 0


# --------------------------------------------------------------------------
# plot / download
# --------------------------------------------------------------------------


def _read_history(path: Path) -> tuple[dict, dict]:
    """A run's ``history.json`` and its ``history``: per-epoch lists of one length."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        history = info["history"]
        columns = [history[name] for name in ("epoch", "train_loss")]
        columns += [v for k, v in history.items() if k.startswith("val_") and v]
        if not all(isinstance(c, list) and len(c) == len(columns[0]) for c in columns):
            raise ValueError("columns of different lengths")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"{path}: not a history file written by mlp-xp") from None
    return info, history


def cmd_plot(args) -> int:
    from . import plots

    run_dir = resolve(args.run_dir)
    hist_path = run_dir / "history.json"
    if not hist_path.is_file():
        raise DataError(f"{run_dir}: no history.json (train with --run-dir {run_dir} first)")
    info, history = _read_history(hist_path)
    task = (info.get("data") or {}).get("task", "classify")
    title = f"learning curves ({info.get('device', '')})"
    written = [plots.learning_curves(history, run_dir / "learning_curves.png", title, task)]
    model_path = Path(info.get("model", ""))
    if model_path.is_file():
        written.extend(_model_plots(model_path, info.get("data") or {}, run_dir, args.device))
    else:
        print(
            f"note: model {model_path} not found; skipped the confusion matrix, worst digits "
            "and reliability diagram",
            file=sys.stderr,
        )
    bench_path = run_dir / "bench.json"
    if bench_path.is_file():
        try:
            bench = json.loads(bench_path.read_text(encoding="utf-8"))
        except ValueError:
            raise DataError(f"{bench_path}: not valid JSON") from None
        if "target" in bench:  # bench --to-accuracy --json: the roofline
            from .roofline import roofline_plot

            written.append(roofline_plot(bench, run_dir / "bench.png"))
        else:
            written.append(plots.bench_plot(bench, run_dir / "bench.png"))
    else:
        print(
            f"note: no {bench_path} (write one with: mlp-xp bench --json > {bench_path}); "
            "skipped the benchmark plot",
            file=sys.stderr,
        )
    for path in written:
        print(f"wrote {path}")
    return 0


def _model_plots(model_path: Path, data: dict, run_dir: Path, device) -> list:
    """A classifier's confusion matrix, worst digits and reliability diagram, on the
    held-out split its run recorded."""
    from . import plots

    written: list = []
    backend = get_backend(device or "cpu")
    model = load_model(model_path, backend)
    if model.task == "classify":
        digits = load_digits(data.get("source", "mnist-5k"), "train", image_shape=(28, 28))
        _, val_idx = recorded_split(digits.labels, data)
        normalization = Normalization.from_meta(model.meta.get("normalization"))
        X = backend.put(normalization.apply(digits.images[val_idx], model.dtype))
        probs = backend.get(model.predict_proba(X)).astype(np.float64)
        true = digits.labels[val_idx]
        written.append(
            plots.confusion_matrix(true, probs.argmax(axis=1), run_dir / "confusion_matrix.png")
        )
        written.append(
            plots.worst_digits(digits.images[val_idx], true, probs, run_dir / "worst_digits.png")
        )
        y = backend.put(true, np.int64)
        curves = {"temperature 1": reliability(model, X, y, temperature=1.0)}
        if model.temperature != 1.0:
            curves[f"temperature {model.temperature:.3g} (fitted here)"] = reliability(model, X, y)
        written.append(plots.reliability_diagram(curves, run_dir / "reliability.png"))
    return written


def cmd_download(args) -> int:
    from ..data.download import download

    folder = resolve(args.dir) if args.dir else Path("data") / args.dataset
    download(args.dataset, folder, log=lambda line: print(line, flush=True))
    print(f"ready: mlp-xp train --data {folder}")
    return 0


def cmd_bench(args) -> int:
    from .bench import format_table, run_bench

    if args.to_accuracy is not None:
        from .bench_accuracy import cmd_to_accuracy

        return cmd_to_accuracy(args)
    devices = None
    if args.devices is not None:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        if not devices:
            raise ConfigError(
                "--devices must be a comma list of cpu, gpu or gpu:N (or torch, torch:cpu, "
                f"torch:cuda:N, mps, xpu:N), got {args.devices!r}"
            )
        for d in devices:
            if parse_device(d).kind not in ("cpu", "gpu", "torch"):
                raise ConfigError(
                    f"unknown device {d!r} in --devices: use cpu, gpu, gpu:N, or through PyTorch "
                    "torch, torch:cpu, torch:cuda:N, mps or xpu:N"
                )
    if args.plot:  # refused now, not after the whole benchmark
        from .plots import require_matplotlib

        require_matplotlib(output_path(resolve(args.plot)))
    log = log_stream(args)
    if args.ranks is not None:
        return _bench_ranks(args, log)
    result = run_bench(
        devices,
        args.batch_sizes,
        args.samples,
        args.repeats,
        args.data,
        not args.no_augment_cost,
        log=lambda s: print(s, file=log, flush=True),
    )
    print(format_table(result), file=log)
    if args.plot:
        from .plots import bench_plot

        print(f"wrote {bench_plot(result, resolve(args.plot))}", file=log)
    if args.json:
        emit_json(result)
    return 0


def _bench_ranks(args, log) -> int:
    """``bench --ranks``: the same training run on each number of CPU ranks."""
    from ..parallel.bench import format_ranks, time_ranks

    data = args.data or "mnist-5k"
    rows = time_ranks(
        args.ranks,
        args.batch_sizes[0],
        args.repeats,
        data=data,
        log=lambda s: print(s, file=log, flush=True),
    )
    print(format_ranks(rows, data), file=log)
    if args.json:
        emit_json({"ranks": rows, "data": data})
    return 0


def cmd_export(args) -> int:
    from ..onnx import OPSET, export_onnx

    source = resolve(args.model)
    output_path(resolve(args.output), inputs=[source])
    model = load_model(source, "cpu")
    path = export_onnx(model, resolve(args.output))
    outputs = ["output"] if model.task == "regress" else ["output", "label"]
    info: dict[str, Any] = {
        "onnx": str(path),
        "opset": OPSET,
        "network": "-".join(str(n) for n in model.layer_sizes),
        "task": model.task,
        "input": {"name": "input", "dtype": model.dtype, "shape": ["N", model.n_inputs]},
        "outputs": outputs,
        "normalization": model.meta.get("normalization"),
    }
    if args.json:
        emit_json(info)
        return 0
    print(
        f"wrote {path}: {info['network']} {model.task} network, ONNX opset {OPSET}; "
        f"input 'input' {model.dtype} (N, {model.n_inputs}), outputs {', '.join(outputs)}"
    )
    norm = info["normalization"]
    if norm:
        offset = f" + {norm['offset']:g}" if norm["offset"] else ""
        print(f"its input is x = pixel / {1 / norm['scale']:.6g}{offset} (pixels 0-255)")
    return 0


COMMANDS = {
    "devices": cmd_devices,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "perceptron": cmd_perceptron,
    "plot": cmd_plot,
    "download": cmd_download,
    "bench": cmd_bench,
    "export": cmd_export,
    "serve": cmd_serve,
}
