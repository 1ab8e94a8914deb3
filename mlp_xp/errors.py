"""The package's own exceptions.

Every error a user can cause (a bad file, a bad flag, a missing GPU) is an
:class:`MlpXpError`. The command line prints its message as one line and exits
with status 2; the Python API simply raises it.
"""

from __future__ import annotations

__all__ = [
    "MlpXpError",
    "ConfigError",
    "DataError",
    "NoDigitError",
    "ModelFileError",
    "OutputError",
    "DeviceError",
    "BackendMismatchError",
    "DivergenceError",
    "MemoryBudgetError",
    "TrainingFailedError",
]


class MlpXpError(Exception):
    """Base class of every error the package raises on bad input or a fault."""


class ConfigError(MlpXpError, ValueError):
    """A hyperparameter, name or option is invalid (e.g. a negative learning rate)."""


class DataError(MlpXpError, ValueError):
    """A dataset file is missing, unreadable, malformed or inconsistent."""


class NoDigitError(DataError):
    """An image holds no digit to recognise (blank: no contrast)."""


class ModelFileError(MlpXpError, ValueError):
    """A model or checkpoint file is missing, corrupt, tampered with or unsafe."""


class OutputError(MlpXpError, OSError):
    """A file cannot be written: no permission, disk full, a file where a folder
    should be, or (on Windows) the target held open by another program too long."""


class DeviceError(MlpXpError, RuntimeError):
    """The requested device cannot be used (no CuPy, no CUDA device, out of memory)."""


class MemoryBudgetError(ConfigError, MemoryError):
    """A network, its training or its data would need more memory than the device has
    free: refused before anything is allocated (:mod:`mlp_xp.budget`), naming the estimate,
    the memory available and the setting to change."""


class BackendMismatchError(MlpXpError, TypeError):
    """Arrays from two different backends met in one computation."""


class DivergenceError(MlpXpError, FloatingPointError):
    """The training loss became NaN or infinite.

    Attributes
    ----------
    epoch, step : int
        Where the first non-finite loss was seen (both 1-based: the first step
        of the first epoch is epoch 1, step 1).
    """

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class TrainingFailedError(MlpXpError, RuntimeError):
    """A training run ended without learning: its held-out score is chance, or its loss
    grew by orders of magnitude. The command saves its model beside an existing one,
    never over it, and exits 2."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of what ``exc`` says (at most ``limit`` characters), else its class's
    name: how every one-line message quotes an error from below."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__
