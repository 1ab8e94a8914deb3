"""Numerical helpers for the tests: central differences on any backend."""

from __future__ import annotations

import numpy as np


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
            model.set_params({k: v.copy() for k, v in base.items()})
            plus = float(model.loss_value(X, T))
            flat[i] = old - h
            model.set_params({k: v.copy() for k, v in base.items()})
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
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
