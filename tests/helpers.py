"""Test helpers: comparisons in the backend's own namespace, central differences, data."""

from __future__ import annotations

import importlib.util

import numpy as np

from mlp_xp.backends import array_kind
from mlp_xp.train import Callback


def _check_like(actual, desired, backend):
    """``desired`` on ``backend``; ``actual`` must be an array of ``backend`` like it."""
    assert backend.owns(actual), f"got a {array_kind(actual)}, expected a {backend.name} array"
    if not backend.owns(desired):
        desired = backend.put(np.asarray(desired))
    assert actual.dtype == desired.dtype, f"dtype {actual.dtype}, expected {desired.dtype}"
    assert tuple(actual.shape) == tuple(desired.shape), (
        f"shape {tuple(actual.shape)}, expected {tuple(desired.shape)}"
    )
    return desired


def xp_assert_close(actual, desired, backend, *, rtol=1e-7, atol=0.0, err_msg=""):
    """Like SciPy's ``xp_assert_close``: same namespace, dtype and shape, then close values.

    The values are compared on the device with ``backend.xp``; only a failure
    copies them to the host, to print NumPy's report of the mismatch.
    """
    desired = _check_like(actual, desired, backend)
    xp = backend.xp
    close = xp.all(xp.abs(actual - desired) <= atol + rtol * xp.abs(desired))
    if not bool(close):
        np.testing.assert_allclose(
            backend.get(actual), backend.get(desired), rtol=rtol, atol=atol, err_msg=err_msg
        )


def xp_assert_equal(actual, desired, backend, *, err_msg=""):
    """Same namespace, dtype and shape, and equal values (compared on the device)."""
    desired = _check_like(actual, desired, backend)
    if not bool(backend.xp.all(actual == desired)):
        np.testing.assert_array_equal(backend.get(actual), backend.get(desired), err_msg=err_msg)


def numeric_grads(model, X, T, h: float = 1e-6) -> dict:
    """dE/dparam by central differences, perturbing host copies one entry at a time."""
    base = model.params_numpy()
    grads = {}
    for key, value in base.items():
        g = np.zeros_like(value)
        flat = value.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            model.set_params(base)
            plus = float(model.loss_value(X, T))
            flat[i] = old - h
            model.set_params(base)
            minus = float(model.loss_value(X, T))
            flat[i] = old
            g.reshape(-1)[i] = (plus - minus) / (2 * h)
        grads[key] = g
    model.set_params(base)
    return grads


def numeric_derivative(fn, a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Elementwise derivative of an elementwise host function."""
    return (fn(a + h) - fn(a - h)) / (2 * h)


def idx_folder(tmp_path, n=60, seed=0, gz=True, test=False):
    """Write a small MNIST-format folder of random digits; return its path."""
    from mlp_xp.data import write_idx

    r = np.random.default_rng(seed)
    images = r.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    if test:
        write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[:20])
        write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[:20])
    return tmp_path


def load_module(path):
    """Import a standalone script or example file as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StopAt(Callback):
    """Asks the trainer to stop after (1-based) ``step`` of (1-based) ``epoch``."""

    def __init__(self, epoch, step):
        self.at = (epoch, step)

    def on_step(self, trainer, step):
        if (trainer.epoch + 1, step) == self.at:
            trainer.request_stop()
