"""The environment a benchmark ran in: versions, devices, BLAS, threads and the load."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

__all__ = ["environment"]

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")  # fmt: skip


def _blas() -> dict[str, Any]:
    """The BLAS NumPy was built with, and (with threadpoolctl) what it runs with."""
    import numpy as np

    out: dict[str, Any] = {}
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        out = {"name": blas.get("name"), "version": blas.get("version")}
    except Exception:  # an older or unusual NumPy: say nothing rather than guess
        pass
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

        out["runtime"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:
        out["runtime"] = "threadpoolctl not installed"
    return out


def _versions() -> dict[str, str]:
    import numpy as np

    from .._version import __version__

    out = {"python": platform.python_version(), "numpy": np.__version__, "mlp_xp": __version__}
    for name in ("cupy", "torch"):  # only what this process has imported: no import here
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def environment(backends=()) -> dict[str, Any]:
    """What the figures depend on, for ``--json`` (Hoefler and Belli, SC15: report it)."""
    from ..host import cpu_label

    try:
        load: list[float] | None = list(os.getloadavg())
    except (AttributeError, OSError):
        load = None
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "versions": _versions(),
        "platform": platform.platform(),
        "cpu": cpu_label(),
        "devices": [{"backend": b.name, "device": b.device, "kind": b.kind} for b in backends],
        "blas": _blas(),
        "threads": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(affinity(0)) if affinity else None,
            **{k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
        },
        "load_average_1_5_15_min": load,
    }
