"""The CuPy fast training step: fused kernels, persistent buffers, one CUDA graph a step.

:func:`choose_step` is what the training loop calls on a CuPy model: it returns the
fast step (:class:`~mlp_xp.gpu.fast.FastStep`) when the configuration has fused kernels
and the new step has passed its check on this device (:mod:`mlp_xp.gpu.check`: a few
steps both ways, once per training run), else the generic step -- with one warning line
when the fast step failed its check (a failure is remembered for the process).
``TrainConfig.gpu_step`` (``--gpu-step``): ``auto`` does that; ``fast`` makes a fast
step that cannot be used an error; ``generic`` never tries it.

This package is imported only for CuPy models; it gets CuPy from the backend
(:mod:`mlp_xp.backends.cupy` stays the only module that imports it).
"""

from __future__ import annotations

import warnings

from ..errors import ConfigError, DeviceError, first_line
from . import check
from .check import VERDICTS, signature
from .fast import FastStep, unsupported

__all__ = ["choose_step", "FastStep", "VERDICTS"]


def choose_step(trainer, generic, plan):
    """The step ``trainer`` should use on its CuPy device (see the module docstring)."""
    insist = trainer.config.gpu_step == "fast"
    why = unsupported(trainer) or (
        "a gradient hook is set (the fast step has none)" if generic.grad_hooks else ""
    )
    if why:
        if insist:
            raise ConfigError(f"gpu_step='fast' cannot train this configuration: {why}")
        return generic
    key = (trainer.backend.key, signature(trainer))
    verdict = VERDICTS.get(key, "")
    if not verdict:  # every new fast step is checked; a failure is remembered
        try:
            fast = FastStep(trainer, generic)
            verdict = check.compare_steps(trainer, generic, fast, plan)
        except Exception as exc:
            verdict = f"it failed ({type(exc).__name__}: {first_line(exc)})"
        VERDICTS[key] = verdict
        if not verdict:
            return fast
    message = f"the fast GPU step is not used on {trainer.backend}: {verdict}"
    if insist:
        raise DeviceError(message)
    warnings.warn(f"{message}; training with the generic step", stacklevel=3)
    return generic
