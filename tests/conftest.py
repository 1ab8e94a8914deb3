"""Shared fixtures: one test body runs on every array backend.

``backend`` (and ``xp``, its namespace) is parametrized over NumPy,
array-api-strict and CuPy. The CuPy case carries the ``gpu`` marker and is
skipped, with the probe's reason, where CuPy or a CUDA device is missing --
unless ``--require-gpu`` or ``MLP_XP_REQUIRE_GPU=1`` is given, which turns that
skip into a failure (use it on GPU machines).
"""

from __future__ import annotations

import os

# scikit-learn's estimator checks test array-API dispatch only where SciPy was
# imported with this set (otherwise they skip): set before anything imports SciPy
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

from mlp_xp.backend import get_backend, gpu_probe

BACKENDS = ["numpy", "array_api_strict", pytest.param("cupy", marks=pytest.mark.gpu)]


def pytest_addoption(parser):
    parser.addoption(
        "--require-gpu",
        action="store_true",
        help="fail (instead of skip) GPU tests when no usable GPU is found",
    )


def require_gpu(config) -> bool:
    return bool(config.getoption("--require-gpu")) or os.environ.get(
        "MLP_XP_REQUIRE_GPU", ""
    ) not in ("", "0")


def make_backend(name: str, config):
    if name == "cupy":
        probe = gpu_probe()
        if not probe.ok:
            message = f"no usable GPU: {probe.reason}"
            if require_gpu(config):
                pytest.fail(message + " (GPU required by --require-gpu/MLP_XP_REQUIRE_GPU)")
            pytest.skip(message)
        return get_backend("gpu")
    if name == "array_api_strict":
        return get_backend("array-api-strict")
    return get_backend("cpu")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """A Backend for each of numpy, array_api_strict and cupy."""
    return make_backend(request.param, request.config)


@pytest.fixture(params=[b for b in BACKENDS if b != "numpy"])
def other_backend(request):
    """Every backend but NumPy: for tests that compare a backend with NumPy."""
    return make_backend(request.param, request.config)


@pytest.fixture
def xp(backend):
    """The array namespace of ``backend``."""
    return backend.xp


@pytest.fixture
def gpu_backend(request):
    """The CuPy backend (skipped, or failed with --require-gpu, where there is none)."""
    return make_backend("cupy", request.config)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def digits():
    from mlp_xp.data import load_digits

    return load_digits()
