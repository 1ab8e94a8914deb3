"""The ``mlp-xp`` command line.

Every error a user can cause prints one line to stderr and exits 2; an
interrupted training run writes a resumable checkpoint and exits 130.
``--json`` makes the last line of stdout one JSON value (logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import MlpXpError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    from .augment import AUGMENTATIONS
    from .optim import OPTIMIZERS
    from .schedules import SCHEDULES
    from .train import TrainConfig

    d = TrainConfig()
    p = _Parser(prog="mlp-xp", description="A from-scratch MLP for handwritten digits, "
                "one code path for NumPy (CPU) and CuPy (GPU).")
    p.add_argument("--version", action="version", version=f"mlp-xp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def device_arg(q):
        q.add_argument("--device", default=None,
                       help="auto (default; or $MLP_XP_DEVICE), cpu or gpu")

    q = sub.add_parser("devices", help="list the devices this machine can train on")
    q.add_argument("--json", action="store_true")

    q = sub.add_parser("train", help="train a network (defaults: 784-300-100-10 on the "
                       "embedded digits)")
    q.add_argument("--data", default="mnist-5k",
                   help="mnist-5k (embedded, default) or a folder of MNIST-format IDX files")
    device_arg(q)
    q.add_argument("--hidden", default="300,100",
                   help="hidden layers, e.g. 300,100 or maxout:300:2,100")
    q.add_argument("--activation", default="relu",
                   help="linear, sigmoid, tanh, relu or softplus; or one per hidden layer")
    q.add_argument("--task", default="classify", choices=("classify", "binary", "regress"),
                   help="softmax+cross-entropy, sigmoid+binary CE (one digit vs rest, "
                   "see --positive) or linear+squared error on the digit's value")
    q.add_argument("--positive", type=int, default=None,
                   help="for --task binary: the digit that is the positive class")
    q.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS)
    q.add_argument("--momentum", type=float, default=d.momentum)
    q.add_argument("--epochs", type=int, default=d.epochs)
    q.add_argument("--batch-size", type=int, default=d.batch_size)
    q.add_argument("--lr", type=float, default=d.lr, help="learning rate eta")
    q.add_argument("--l2", type=float, default=1e-4, help="L2 weight penalty lambda")
    q.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
    q.add_argument("--warmup", type=float, default=d.warmup_epochs, metavar="EPOCHS",
                   help="linear learning-rate warm-up, in epochs")
    q.add_argument("--augment", default=d.augment, choices=AUGMENTATIONS)
    q.add_argument("--dropout", type=float, default=d.dropout,
                   help="inverted-dropout rate on hidden layers (0 = off)")
    q.add_argument("--patience", type=int, default=d.patience,
                   help="early stopping after N epochs without improvement (0 = off)")
    q.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the data held out for validation (stratified)")
    q.add_argument("--seed", type=int, default=d.seed)
    q.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    q.add_argument("--out", default=None,
                   help="where to save the model (default model.npz, or RUN_DIR/model.npz)")
    q.add_argument("--run-dir", default=None,
                   help="folder for history.csv/json, the checkpoint and (by default) the model")
    q.add_argument("--resume", default=None, metavar="CKPT", help="continue from a checkpoint")
    q.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch log")
    q.add_argument("--json", action="store_true")

    q = sub.add_parser("evaluate", help="accuracy and loss of a saved model")
    q.add_argument("model")
    q.add_argument("--data", default=None, help="default: the data the model was trained on")
    q.add_argument("--split", default="val", choices=("train", "val", "test"))
    device_arg(q)
    q.add_argument("--json", action="store_true")

    q = sub.add_parser("predict", help="recognise digits in IDX, .npy or image files")
    q.add_argument("model")
    q.add_argument("inputs", nargs="+", metavar="INPUT")
    device_arg(q)
    q.add_argument("--json", action="store_true")
    q = sub.add_parser("bench", help="time training on each device and batch size")
    q.add_argument("--devices", default="cpu,gpu", help="comma list of cpu, gpu")
    q.add_argument("--batch-sizes", type=_csv_ints, default=[32, 128, 512, 2048])
    q.add_argument("--samples", type=int, default=60000,
                   help="synthetic MNIST-shaped samples per epoch (default 60000)")
    q.add_argument("--data", default=None, help="time on mnist-5k or a folder of IDX files "
                   "instead of synthetic samples")
    q.add_argument("--repeats", type=int, default=3, help="timed epochs per configuration")
    q.add_argument("--no-augment-cost", action="store_true",
                   help="skip timing affine augmentation separately")
    q.add_argument("--plot", default=None, metavar="FILE.png")
    q.add_argument("--json", action="store_true")

    q = sub.add_parser("plot", help="learning curves, confusion matrix, worst digits and "
                       "benchmark plots of a run folder (PNG)")
    q.add_argument("run_dir", metavar="RUN_DIR")
    device_arg(q)

    q = sub.add_parser("download", help="fetch MNIST, Fashion-MNIST or KMNIST (checksummed)")
    q.add_argument("dataset", choices=("mnist", "fashion-mnist", "kmnist"))
    q.add_argument("--dir", default=None, help="target folder (default data/DATASET)")

    q = sub.add_parser("perceptron", help="the primal perceptron algorithm on two digits or a "
                       "toy table")
    q.add_argument("--digits", default="0,1", help="two digits, the first is -1 (default 0,1)")
    q.add_argument("--toy", default=None, choices=("and", "or", "xor"),
                   help="a 2-input truth table instead of digits")
    q.add_argument("--data", default="mnist-5k")
    q.add_argument("--max-epochs", type=int, default=100)
    q.add_argument("--lr", type=float, default=1.0)
    device_arg(q)
    q.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlp-xp``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    from . import commands

    handler = getattr(commands, f"cmd_{args.command}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _warn_one_line
            return int(handler(args) or 0)
    except MlpXpError as exc:
        print(f"mlp-xp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mlp-xp {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"mlp-xp {args.command}: error: out of host memory; try a smaller "
              "--batch-size or dataset", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        from .backend import device_error_for

        error = device_error_for(exc)
        if error is None:
            raise
        print(f"mlp-xp {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _warn_one_line(message, category, filename, lineno, file=None, line=None):
    print(f"mlp-xp: warning: {message}", file=sys.stderr)


def emit_json(value) -> None:
    """Print one JSON value as the last line of stdout."""
    print(json.dumps(value))


def log_stream(args) -> "object":
    """Where human-readable lines go: stdout, or stderr when --json owns stdout."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def resolve(path: str) -> Path:
    return Path(path).expanduser()
