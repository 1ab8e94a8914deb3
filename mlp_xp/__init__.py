"""mlp_xp: a from-scratch multilayer perceptron whose math runs on NumPy or CuPy.

Every piece of math is written once against an array module ``xp``; the same
forward and backward code trains on the CPU (NumPy) or a CUDA GPU (CuPy),
chosen at runtime. Importing this package never imports CuPy.

The math core sits at the top (:mod:`~mlp_xp.backends`, :mod:`~mlp_xp.functional`,
:mod:`~mlp_xp.init`, :mod:`~mlp_xp.layers`, :mod:`~mlp_xp.model`,
:mod:`~mlp_xp.optim`, :mod:`~mlp_xp.constraints`, :mod:`~mlp_xp.checkpoint`);
:mod:`mlp_xp.train`, :mod:`mlp_xp.data` and :mod:`mlp_xp.cli` build on it.

>>> from mlp_xp import MLP, fit, load_model, get_backend  # doctest: +SKIP

``with mlp_xp.device("gpu:1"):`` makes a device the default inside a block
(:func:`device`); ``model.to("cpu")`` copies a network to another device.
"""

from . import (
    errors,
    gpu,  # noqa: F401 -- offers CuPy models the fast step (imports no CuPy)
)
from ._version import __version__
from .backends import Backend, device, get_backend
from .checkpoint import load_model, save_model
from .data import load_digits, read_idx, scale_images, stratified_split, write_idx
from .errors import *  # noqa: F403 -- every exception is public
from .model import MLP
from .onnx import export_onnx
from .optim import SGD, Adam
from .train import Callback, History, TrainConfig, Trainer, fit, load_checkpoint, save_checkpoint

__all__ = [
    "MLP", "fit", "Trainer", "TrainConfig", "History", "Callback", "SGD", "Adam",
    "get_backend", "Backend", "device", "load_model", "save_model", "load_checkpoint",
    "save_checkpoint",
    "load_digits", "read_idx", "write_idx", "scale_images", "stratified_split", "export_onnx",
    *errors.__all__, "__version__",
]  # fmt: skip
