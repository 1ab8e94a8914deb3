"""The ``mlp-xp`` argument parser: the command-line contract, flag by flag.

Numeric flags and names are parsed and checked by :mod:`mlp_xp.constraints`, so
a bad value is refused with the same sentence as in the Python API, as one
``argparse`` line and exit status 2.
"""

from __future__ import annotations

import argparse

from .. import __version__
from ..constraints import (
    ACTIVATIONS,
    AUGMENTATIONS,
    DTYPES,
    GPU_STEPS,
    OPTIMIZERS,
    SCHEDULES,
    TASKS,
    argument_type,
)
from ..train import TrainConfig
from ..train.config import default_lr
from .console import EXIT_USAGE

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits 2."""

    def error(self, message):  # argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Given(argparse.Action):
    """Stores a flag's value like argparse's ``store`` and records that it was typed.

    ``args.given`` is then the set of destinations typed on the command line
    (``--lr=0.1``, an abbreviation like ``--epo 5``, or the default's own value all
    count), which ``train --resume`` needs to tell a flag given from a default.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = frozenset(getattr(namespace, "given", frozenset())) | {self.dest}


def _comma_list(name: str):
    """A ``type=`` for a comma list whose every item is checked as parameter ``name``."""
    item = argument_type(name)

    def parse(text: str) -> list:
        values = [item(v) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma list, got {text!r}")
        return values

    return parse


def checked(
    q, flag: str, default, help: str | None = None, *, name: str | None = None, **kwargs
) -> None:
    """A flag parsed and checked by the constraints table entry ``name`` (from the flag)."""
    name = name or flag.lstrip("-").replace("-", "_")
    q.add_argument(flag, type=argument_type(name), default=default, help=help, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mlp-xp",
        description="A from-scratch MLP for handwritten digits, "
        "one code path for NumPy (CPU) and CuPy (GPU).",
    )
    p.add_argument("--version", action="version", version=f"mlp-xp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in (_devices, _train, _evaluate, _predict, _bench, _others, _serve):
        add(sub)
    return p


def calibration_arg(q) -> None:
    q.add_argument(
        "--no-calibration",
        action="store_true",
        help="probabilities at temperature 1, not the one train fitted on its held-out split",
    )


def device_arg(q):
    q.add_argument(
        "--device",
        default=None,
        help="auto (default; or $MLP_XP_DEVICE), cpu, gpu (GPU 0) or gpu:N (cuda:N)",
    )


def _devices(sub) -> None:
    q = sub.add_parser("devices", help="list the devices this machine can train on")
    q.add_argument("--json", action="store_true")


def _train(sub) -> None:
    q = sub.add_parser(
        "train", help="train a network (defaults: 784-300-100-10 on the embedded digits)"
    )
    q.register("action", None, _Given)  # every value flag of train records that it was typed
    q.set_defaults(given=frozenset())
    q.add_argument(
        "--data",
        default="mnist-5k",
        help="mnist-5k (embedded, default) or a folder of MNIST-format IDX files",
    )
    device_arg(q)
    q.add_argument(
        "--hidden", default="300,100", help="hidden layers, e.g. 300,100 or maxout:300:2,100"
    )
    q.add_argument(
        "--activation", default="relu", help=f"{', '.join(ACTIVATIONS)}; or one per hidden layer"
    )
    q.add_argument(
        "--task",
        default="classify",
        choices=TASKS,
        help="softmax+cross-entropy, sigmoid+binary CE (one digit vs rest, "
        "see --positive) or linear+squared error on the digit's value",
    )
    checked(q, "--positive", None, "for --task binary: the digit that is the positive class")
    _recipe(q)
    _run_options(q)


def _recipe(q) -> None:
    """The training recipe's flags (defaults: :class:`~mlp_xp.TrainConfig`)."""
    d = TrainConfig()
    q.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS)
    checked(
        q, "--momentum", d.momentum, "heavy-ball momentum (default: none for sgd, 0.9 for momentum)"
    )
    checked(q, "--epochs", d.epochs)
    checked(q, "--batch-size", d.batch_size)
    checked(
        q,
        "--lr",
        None,
        f"learning rate eta (default {d.lr:g}; {default_lr('adam'):g} with --optimizer adam; "
        f"{default_lr(task='regress'):g} for --task regress)",
    )
    checked(q, "--l2", 1e-4, "L2 weight penalty lambda")
    q.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
    checked(
        q,
        "--warmup",
        d.warmup_epochs,
        "linear learning-rate warm-up, in epochs",
        name="warmup_epochs",
        metavar="EPOCHS",
    )
    q.add_argument(
        "--augment",
        default=d.augment,
        choices=AUGMENTATIONS,
        help="auto (default): decided from the data: the digit distortions for handwriting "
        "(known by its pixels or files, or measured: pen strokes whose labels survive the "
        "distortions), none for photographs of objects and anything else",
    )
    checked(q, "--dropout", d.dropout, "inverted-dropout rate on hidden layers (0 = off)")
    checked(
        q,
        "--ema",
        d.ema,
        "decay of the moving average of the weights that is evaluated and saved in their "
        "place (0 = off)",
        metavar="DECAY",
    )
    checked(
        q, "--patience", d.patience, "early stopping after N epochs without improvement (0 = off)"
    )
    checked(q, "--val-fraction", 0.2, "share of the data held out for validation (stratified)")
    checked(q, "--seed", d.seed)


def _run_options(q) -> None:
    """How and where a train run goes: the GPU step, outputs, ranks, logging."""
    d = TrainConfig()
    checked(
        q,
        "--gpu-step",
        d.gpu_step,
        "on a GPU: auto (the fused step once it has checked itself against the generic "
        "one on this device), generic, fast (an error if it cannot be used), or graph "
        "(fast, also captured as one CUDA graph a step where the platform allows it); "
        f"one of {', '.join(GPU_STEPS)}",
    )
    q.add_argument("--dtype", default="float32", choices=DTYPES)
    q.add_argument(
        "--out",
        default=None,
        help="where to save the model (default model.npz, or RUN_DIR/model.npz)",
    )
    q.add_argument(
        "--run-dir",
        default=None,
        help="folder for history.csv/json, the checkpoint and (by default) the model",
    )
    q.add_argument("--resume", default=None, metavar="CKPT", help="continue from a checkpoint")
    q.add_argument(
        "--overwrite",
        action="store_true",
        help="a --run-dir holding another run's files: remove them and start this run there "
        "(its model is replaced once this run succeeds)",
    )
    q.add_argument(
        "--distributed",
        action="store_true",
        help="one rank of a data-parallel run: mpiexec -n N mlp-xp train --distributed "
        "(--batch-size is the global batch)",
    )
    q.add_argument(
        "--stream",
        action="store_true",
        help="keep the training images in their (memory-mapped) files and send one batch "
        "at a time to the device, for sets larger than device memory or RAM",
    )
    checked(
        q,
        "--watchdog",
        120.0,
        "with --distributed: end the job when no step finishes for this many seconds",
        metavar="SECONDS",
    )
    q.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch log")
    q.add_argument("--json", action="store_true")


def _evaluate(sub) -> None:
    q = sub.add_parser("evaluate", help="accuracy, loss and calibration error of a saved model")
    q.add_argument("model")
    q.add_argument("--data", default=None, help="default: the data the model was trained on")
    q.add_argument("--split", default="val", choices=("train", "val", "test"))
    device_arg(q)
    calibration_arg(q)
    q.add_argument("--json", action="store_true")


def _predict(sub) -> None:
    q = sub.add_parser("predict", help="recognise digits in IDX, .npy or image files")
    q.add_argument("model")
    q.add_argument("inputs", nargs="+", metavar="INPUT")
    device_arg(q)
    calibration_arg(q)
    q.add_argument("--json", action="store_true")


def _bench(sub) -> None:
    q = sub.add_parser("bench", help="time training on each device and batch size")
    q.add_argument(
        "--devices",
        default=None,
        help="comma list of cpu, gpu, gpu:N (default: cpu, and the GPU when there is a "
        "usable one; a GPU named here that cannot be used is an error)",
    )
    q.add_argument("--batch-sizes", type=_comma_list("batch_size"), default=[32, 128, 512, 2048])
    checked(q, "--samples", 60000, "synthetic MNIST-shaped samples per epoch (default 60000)")
    q.add_argument(
        "--data",
        default=None,
        help="time on mnist-5k or a folder of IDX files instead of synthetic samples",
    )
    checked(q, "--repeats", 3, "timed epochs per configuration")
    q.add_argument(
        "--no-augment-cost", action="store_true", help="skip timing affine augmentation separately"
    )
    q.add_argument(
        "--ranks",
        type=_comma_list("ranks"),
        default=None,
        help="instead: time data-parallel training on these numbers of CPU ranks, e.g. 1,2 "
        "(launched with mpiexec, one BLAS thread each; the mpi extra)",
    )
    _bench_accuracy(q)
    q.add_argument("--plot", default=None, metavar="FILE.png")
    q.add_argument("--json", action="store_true")


def _bench_accuracy(q) -> None:
    """``bench --to-accuracy``'s flags (docs/benchmarks.md)."""
    checked(q, "--to-accuracy", None, "instead: time cold-start runs of the recipe to this "
            "held-out accuracy (e.g. 0.97 on mnist-5k), and where a step's time goes",
            metavar="A")  # fmt: skip
    checked(q, "--seeds", 6, "with --to-accuracy: runs (seeds) per device and batch size "
            "(6 or more for a 95%% interval; default 6)", metavar="N")  # fmt: skip
    checked(q, "--max-epochs", 60, "with --to-accuracy: a run that has not reached the "
            "target after this many epochs never reached it (default 60)", metavar="E")  # fmt: skip


def _others(sub) -> None:
    """plot, download, export and perceptron."""
    q = sub.add_parser(
        "plot",
        help="learning curves, confusion matrix, worst digits and "
        "benchmark plots of a run folder (PNG)",
    )
    q.add_argument("run_dir", metavar="RUN_DIR")
    device_arg(q)

    q = sub.add_parser("download", help="fetch MNIST, Fashion-MNIST or KMNIST (checksummed)")
    q.add_argument("dataset", choices=("mnist", "fashion-mnist", "kmnist"))
    q.add_argument("--dir", default=None, help="target folder (default data/DATASET)")

    q = sub.add_parser(
        "export", help="write a model file as an ONNX graph for any ONNX runtime (onnx extra)"
    )
    q.add_argument("model", metavar="MODEL.npz")
    q.add_argument("output", metavar="MODEL.onnx")
    q.add_argument("--json", action="store_true")

    q = sub.add_parser(
        "perceptron", help="the primal perceptron algorithm on two digits or a toy table"
    )
    q.add_argument("--digits", default=None, help="two digits, the first is -1 (default 0,1)")
    q.add_argument(
        "--toy",
        default=None,
        choices=("and", "or", "xor"),
        help="a 2-input truth table instead of digits",
    )
    q.add_argument("--data", default="mnist-5k")
    checked(q, "--max-epochs", 100)
    checked(q, "--lr", 1.0, "the perceptron's step eta")
    device_arg(q)
    q.add_argument("--json", action="store_true")


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return int(text)


def _serve(sub) -> None:
    q = sub.add_parser(
        "serve", help="a draw-a-digit page and an HTTP API for a model (serve extra)"
    )
    q.add_argument("model", metavar="MODEL.npz")
    q.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)",
    )
    q.add_argument("--port", type=_port, default=8000, help="default 8000; 0 picks a free one")
    device_arg(q)
