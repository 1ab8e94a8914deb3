"""Shared fixtures: one test body runs on every array backend.

``backend`` (and ``xp``, its namespace) is parametrized over NumPy,
array-api-strict, ``cupy-sim``, ``torch-cpu`` (PyTorch tensors on its CPU, skipped where the
torch extra is missing) and CuPy. ``cupy-sim`` is the package's CuPy code path
on the counting CuPy double (``tests/cupy_double``, NumPy underneath, two simulated
GPUs), so it runs everywhere. The real CuPy case carries the ``gpu`` marker and is
skipped, with the probe's reason, where CuPy or a CUDA device is missing -- unless
``--require-gpu`` or ``MLP_XP_REQUIRE_GPU=1`` is given, which turns that skip into a
failure (use it on GPU machines). ``gpu_backend`` is ``cupy-sim`` and real CuPy.
"""

from __future__ import annotations

import os

# scikit-learn's estimator checks test array-API dispatch only where SciPy was
# imported with this set (otherwise they skip): set before anything imports SciPy
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

from mlp_xp.backends import get_backend, gpu_probe

REAL_GPU = pytest.param("cupy", marks=pytest.mark.gpu)
BACKENDS = ["numpy", "array_api_strict", "cupy-sim", "torch-cpu", REAL_GPU]


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


def simulated_gpu(request, **kwargs):
    """Install the counting CuPy double for the rest of the test; return its module."""
    from .cupy_double import installed

    block = installed(**kwargs)
    module = block.__enter__()
    request.addfinalizer(lambda: block.__exit__(None, None, None))
    return module


def make_backend(name: str, request):
    config = request.config
    if name == "cupy-sim":
        simulated_gpu(request)
        return get_backend("gpu")
    if name == "cupy":
        probe = gpu_probe()
        if not probe.ok:
            message = f"no usable GPU: {probe.reason}"
            if require_gpu(config):
                pytest.fail(message + " (GPU required by --require-gpu/MLP_XP_REQUIRE_GPU)")
            pytest.skip(message)
        return get_backend("gpu")
    if name == "torch-cpu":
        from mlp_xp.backends.torch import torch_probe

        probe = torch_probe("cpu")
        if not probe.ok:  # .ci/run installs PyTorch: there this never skips
            pytest.skip(f"no PyTorch: {probe.reason} ({probe.fix})")
        return get_backend("torch:cpu")
    if name == "array_api_strict":
        return get_backend("array-api-strict")
    return get_backend("cpu")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """A Backend for each of numpy, array_api_strict, cupy-sim, torch-cpu and cupy."""
    return make_backend(request.param, request)


@pytest.fixture(params=[b for b in BACKENDS if b != "numpy"])
def other_backend(request):
    """Every backend but NumPy: for tests that compare a backend with NumPy."""
    return make_backend(request.param, request)


@pytest.fixture
def xp(backend):
    """The array namespace of ``backend``."""
    return backend.xp


@pytest.fixture(params=["cupy-sim", REAL_GPU])
def gpu_backend(request):
    """The CuPy backend on the double, and on a real GPU (skipped, or failed with
    --require-gpu, where there is none)."""
    return make_backend(request.param, request)


@pytest.fixture
def real_gpu(request):
    """The CuPy backend on a real GPU only."""
    return make_backend("cupy", request)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def digits():
    from mlp_xp.data import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One real (short) ``mlp-xp train --run-dir`` on the CPU, shared by the command-line
    and tooling tests: ``RUN/model.npz``, its history and its checkpoint folder."""
    from mlp_xp.cli import main

    run = tmp_path_factory.mktemp("run")
    argv = ["train", "--epochs", "12", "--device", "cpu", "--run-dir", str(run), "--quiet"]
    assert main([*argv, "--augment", "affine"]) == 0
    return run
