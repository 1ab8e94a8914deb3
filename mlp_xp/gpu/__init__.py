"""The CuPy fast training step: fused kernels and persistent buffers, kernel by kernel
(or, asked for, captured as one CUDA graph a step).

:func:`choose_step` is what the training loop calls on a CuPy model: it returns the
fast step (:class:`~mlp_xp.gpu.fast.FastStep`) when the configuration has fused kernels
and the new step has passed its check on this device (:mod:`mlp_xp.gpu.check`: a few
steps both ways, once per training run), else the generic step -- with one warning line
when the fast step failed its check (a failure is remembered for the process).
``TrainConfig.gpu_step`` (``--gpu-step``): ``auto`` does that; ``fast`` makes a fast
step that cannot be used an error; ``graph`` is ``fast`` also captured as one CUDA graph a
step -- CuPy 14 refuses cuBLAS while a stream captures (on CUDA; not on ROCm), so there
the graph is lost with one warning and the step runs kernel by kernel; ``generic`` never
tries it.

This package is imported only for CuPy models; it gets CuPy from the backend
(:mod:`mlp_xp.backends.cupy` stays the only module that imports it).
"""

from __future__ import annotations

import warnings

from ..errors import ConfigError, DeviceError, first_line
from ..train.step import FASTER_STEPS
from . import check
from .check import VERDICTS, signature
from .fast import FastStep, unsupported

__all__ = ["choose_step", "FastStep", "VERDICTS"]


def choose_step(state, data, mode: str, generic, plan):
    """The step for ``state`` on its CuPy device (see the module docstring); ``mode`` is
    ``TrainConfig.gpu_step``."""
    insist = mode in ("fast", "graph")
    backend = state.backend
    why = unsupported(state, data) or (
        "a gradient hook is set (the fast step has none)" if generic.grad_hooks else ""
    )
    if why:
        if insist:
            raise ConfigError(f"gpu_step={mode!r} cannot train this configuration: {why}")
        return generic
    key = (backend.key, signature(state, data))
    failed = VERDICTS.get(key, "")
    if not failed:  # every new fast step is checked; a failure is remembered
        graph = mode == "graph" and not VERDICTS.get((key, "graph"))  # a lost graph stays lost
        try:
            fast = FastStep(state, data, generic)
            failed, no_graph = check.compare_steps(state, generic, fast, plan, graph)
        except Exception as exc:
            failed, no_graph = f"it failed ({type(exc).__name__}: {first_line(exc)})", ""
        VERDICTS[key] = failed
        if not failed:
            if no_graph:  # said once a process for this configuration and device
                VERDICTS[key, "graph"] = no_graph
                warnings.warn(
                    f"the fast GPU step runs kernel by kernel on {backend}: it could "
                    f"not be used as a CUDA graph ({no_graph})",
                    stacklevel=3,
                )
            return fast
    message = f"the fast GPU step is not used on {backend}: {failed}"
    if insist:
        raise DeviceError(message)
    warnings.warn(f"{message}; training with the generic step", stacklevel=3)
    return generic


FASTER_STEPS["cupy"] = choose_step  # what the training loop asks a CuPy model for
