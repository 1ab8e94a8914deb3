"""mlp_xp: a from-scratch multilayer perceptron whose math runs on NumPy or CuPy.

Every piece of math is written once against an array module ``xp``; the same
forward and backward code trains on the CPU (NumPy) or a CUDA GPU (CuPy),
chosen at runtime. Importing this package never imports CuPy.

>>> from mlp_xp import MLP, fit, load_model, get_backend  # doctest: +SKIP
"""

from .backend import Backend, get_backend
from .checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from .data import load_digits, read_idx, scale_images, stratified_split, write_idx
from .errors import (BackendMismatchError, ConfigError, DataError, DeviceError,
                     DivergenceError, MlpXpError, ModelFileError)
from .model import MLP
from .optim import SGD, Adam
from .train import History, TrainConfig, Trainer, fit

__version__ = "0.1.0"

__all__ = [
    "MLP", "fit", "Trainer", "TrainConfig", "History", "SGD", "Adam",
    "get_backend", "Backend", "load_model", "save_model", "load_checkpoint", "save_checkpoint",
    "load_digits", "read_idx", "write_idx", "scale_images", "stratified_split",
    "MlpXpError", "ConfigError", "DataError", "ModelFileError", "DeviceError",
    "BackendMismatchError", "DivergenceError", "__version__",
]
