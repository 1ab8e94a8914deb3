"""Augmentation, dropout and schedules: exact where exactness is possible."""

import math

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.augment import Augmenter, make_augmenter, warp
from mlp_xp.errors import ConfigError
from mlp_xp.schedules import make_schedule


@pytest.fixture(scope="module")
def images(digits):
    return (digits.images[::250] / 255.0).reshape(-1, 784).astype(np.float32)


def _grid(n, dr=0.0, dc=0.0):
    rows = np.broadcast_to(np.arange(28.0)[None, :, None] + dr, (n, 28, 28))
    cols = np.broadcast_to(np.arange(28.0)[None, None, :] + dc, (n, 28, 28))
    return rows.astype(np.float32), cols.astype(np.float32)


def test_warp_identity_and_integer_shift_are_exact(backend, images):
    xp, n = backend.xp, images.shape[0]
    X = backend.asarray(images)
    rows, cols = _grid(n)
    same = warp(xp, X, backend.asarray(rows), backend.asarray(cols), 28, 28)
    np.testing.assert_array_equal(backend.to_numpy(same), images)
    rows, cols = _grid(n, dr=-1.0, dc=2.0)  # output (r, c) reads (r - 1, c + 2)
    moved = backend.to_numpy(warp(xp, X, backend.asarray(rows), backend.asarray(cols), 28, 28))
    expected = np.zeros((n, 28, 28), np.float32)
    expected[:, 1:, :26] = images.reshape(n, 28, 28)[:, :27, 2:]
    np.testing.assert_array_equal(moved.reshape(n, 28, 28), expected)


def test_warp_half_pixel_is_the_bilinear_average(images):
    rows, cols = _grid(images.shape[0], dc=0.5)
    out = warp(np, images, rows, cols, 28, 28).reshape(-1, 28, 28)
    img = images.reshape(-1, 28, 28)
    np.testing.assert_allclose(out[:, :, :27], 0.5 * (img[:, :, :27] + img[:, :, 1:]), atol=1e-6)


@pytest.mark.parametrize("kind", ["shift", "affine", "elastic"])
def test_augmenters_agree_across_backends_and_stay_in_range(backend, images, kind):
    aug = make_augmenter(kind)
    ref = aug(np, images, np.random.default_rng(3), _cpu())
    out = backend.to_numpy(aug(backend.xp, backend.asarray(images), np.random.default_rng(3),
                               backend))
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert out.shape == images.shape and out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert not np.allclose(out, images)            # it did distort
    ink = images.sum(axis=1)
    assert np.all(np.abs(out.sum(axis=1) - ink) < 0.45 * ink)  # the digit stays in frame


def _cpu():
    from mlp_xp.backend import get_backend
    return get_backend("cpu")


def test_same_rng_same_distortion_other_rng_other(images):
    aug = Augmenter("affine")
    a = aug(np, images, np.random.default_rng(1), _cpu())
    b = aug(np, images, np.random.default_rng(1), _cpu())
    c = aug(np, images, np.random.default_rng(2), _cpu())
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_augmentation():
    with pytest.raises(ConfigError, match="unknown augmentation"):
        make_augmenter("mixup")


def test_dropout_gradients_match_central_differences(backend, rng):
    model = MLP(4, (5, 4), 3, activation="tanh", backend=backend, dtype="float64", seed=1)
    X = backend.asarray(rng.normal(size=(6, 4)), "float64")
    T = model.targets(backend.asarray(rng.integers(0, 3, 6)))
    masks = model.dropout_masks(np.random.default_rng(0), 6, 0.4)
    kept = backend.to_numpy(masks[0])
    assert set(np.unique(kept)) <= {0.0, 1 / 0.6} and 0 < (kept == 0).mean() < 1
    _, grads = model.loss_and_grads(X, T, masks)
    base = model.params_numpy()

    def loss(params):
        model.set_params(params)
        return float(model.loss.value(model.xp, model.logits(X, masks=masks), T))

    h = 1e-6
    for key in base:
        num = np.zeros_like(base[key])
        for i in np.ndindex(base[key].shape):
            p, m = {k: v.copy() for k, v in base.items()}, {k: v.copy() for k, v in base.items()}
            p[key][i] += h
            m[key][i] -= h
            num[i] = (loss(p) - loss(m)) / (2 * h)
        np.testing.assert_allclose(backend.to_numpy(grads[key]), num, rtol=1e-5, atol=1e-8)
    model.set_params(base)


@pytest.mark.parametrize("name, checks", [
    ("constant", {0: 1.0, 99: 1.0}),
    ("step", {0: 1.0, 49: 1.0, 50: 0.5, 75: 0.25}),
    ("cosine", {0: 1.0, 50: 0.5, 100: 0.0}),
    ("onecycle", {0: 0.1, 30: 1.0, 100: 0.0}),
])
def test_schedules(name, checks):
    f = make_schedule(name, 100)
    for step, value in checks.items():
        assert f(step) == pytest.approx(value, abs=1e-12)


def test_warmup_ramps_linearly():
    f = make_schedule("constant", 100, warmup_steps=10)
    assert [f(s) for s in (0, 4, 9, 50)] == [0.1, 0.5, 1.0, 1.0]
    assert math.isclose(make_schedule("cosine", 100, 10)(0), 0.1)
