"""Augmentation, dropout and schedules: exact where exactness is possible."""

import math

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.backends import get_backend
from mlp_xp.errors import ConfigError
from mlp_xp.train.augment import Augmenter, make_augmenter, warp
from mlp_xp.train.dropout import dropout_masks
from mlp_xp.train.schedules import make_schedule

from .helpers import xp_assert_close, xp_assert_equal

CPU = get_backend("cpu")


@pytest.fixture(scope="module")
def images(digits):
    return (digits.images[::250] / 255.0).reshape(-1, 784).astype(np.float32)


def _grid(n, dr=0.0, dc=0.0):
    """(n, 2, 784) source coordinates: output (r, c) reads (r + dr, c + dc)."""
    rows = np.broadcast_to(np.arange(28.0)[None, :, None] + dr, (n, 28, 28))
    cols = np.broadcast_to(np.arange(28.0)[None, None, :] + dc, (n, 28, 28))
    return np.stack([rows, cols], axis=1).reshape(n, 2, 784).astype(np.float32)


def test_warp_identity_and_integer_shift_are_exact(backend, images):
    xp, n = backend.xp, images.shape[0]
    X = backend.put(images)
    xp_assert_equal(warp(xp, X, backend.put(_grid(n)), 28, 28), images, backend)
    coords = backend.put(_grid(n, dr=-1.0, dc=2.0))  # output (r, c) reads (r - 1, c + 2)
    expected = np.zeros((n, 28, 28), np.float32)
    expected[:, 1:, :26] = images.reshape(n, 28, 28)[:, :27, 2:]
    xp_assert_equal(warp(xp, X, coords, 28, 28), expected.reshape(n, 784), backend)


@pytest.mark.parametrize("dr, dc", [(1.0, 0.0), (0.0, 1.0), (1.5, 0.0), (0.0, 3.0), (40.0, 0.0)])
def test_warp_reads_background_beyond_the_last_row_and_column(backend, dr, dc):
    """Shifting an image whose last row and column are ink: what comes from past the edge is 0."""
    img = np.zeros((1, 28, 28), np.float32)
    img[:, -1, :] = 1.0
    img[:, :, -1] = 1.0
    coords = backend.put(_grid(1, dr=dr, dc=dc))  # output (r, c) reads (r + dr, c + dc)
    out = backend.get(warp(backend.xp, backend.put(img.reshape(1, 784)), coords, 28, 28))
    out = out.reshape(28, 28)
    past_r, past_c = min(int(dr), 28), min(int(dc), 28)  # rows/cols with r + dr >= 28
    if past_r:
        assert not out[28 - past_r :, :].any()  # read from beyond the last row: blank
    if past_c:
        assert not out[:, 28 - past_c :].any()
    if dr == 1.0:
        np.testing.assert_array_equal(out[26, :27], 1.0)  # the last row moved up by one
    if dr == 1.5:
        np.testing.assert_array_equal(out[26, :27], 0.5)  # half ink, half background


def _bilinear_reference(image, r, c):
    """Bilinear sampling of ``image`` at (r, c), everything outside it 0, pixel by pixel."""
    h, w = image.shape

    def pixel(i, j):
        return float(image[i, j]) if 0 <= i < h and 0 <= j < w else 0.0

    r0, c0 = math.floor(r), math.floor(c)
    fr, fc = r - r0, c - c0
    top = pixel(r0, c0) * (1 - fc) + pixel(r0, c0 + 1) * fc
    bottom = pixel(r0 + 1, c0) * (1 - fc) + pixel(r0 + 1, c0 + 1) * fc
    return top * (1 - fr) + bottom * fr


def _edge_cases(images):
    """Coordinates at and past every edge, near and far, and what bilinear sampling with
    zeros outside gives there."""
    special = [-1e6, -40.0, -3.0, -2.0, -1.75, -1.0, -0.5, 0.0, 13.3, 26.5, 27.0, 27.25, 27.9]
    special += [28.0, 28.5, 29.0, 31.0, 1e6]
    rng = np.random.default_rng(5)
    n = images.shape[0]
    coords = rng.choice(np.array(special, np.float32), size=(n, 2, 784))
    coords[:, :, ::3] = rng.uniform(-4, 32, size=(n, 2, 262)).astype(np.float32)
    img = images.reshape(n, 28, 28)
    expected = np.array(
        [
            [_bilinear_reference(img[i], float(r), float(c)) for r, c in coords[i].T]
            for i in range(n)
        ]
    )
    return coords, expected


def test_warp_matches_bilinear_sampling_with_zeros_outside_for_any_coordinate(backend, images):
    """The clipping of the coordinates never shows."""
    coords, expected = _edge_cases(images)
    out = backend.get(warp(backend.xp, backend.put(images), backend.put(coords), 28, 28))
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)


def test_warp_into_reused_buffers_matches_bilinear_sampling_for_any_coordinate(images):
    """The training step's path on the CPU: every value written over one no longer needed,
    the coordinates clipped in place, the buffers of one call reused by the next."""
    coords, expected = _edge_cases(images)
    buffers: dict = {}
    for _ in range(2):
        out = warp(np, images, coords.copy(), 28, 28, buffers=buffers)
        np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)
    assert np.shares_memory(out, buffers["at0"])  # the result is one of the reused buffers


def test_warp_half_pixel_is_the_bilinear_average(images):
    out = warp(np, images, _grid(images.shape[0], dc=0.5), 28, 28).reshape(-1, 28, 28)
    assert not out[:, :, 27].any()  # the last column blends with the background
    img = images.reshape(-1, 28, 28)
    np.testing.assert_allclose(out[:, :, :27], 0.5 * (img[:, :, :27] + img[:, :, 1:]), atol=1e-6)


@pytest.mark.parametrize("kind", ["shift", "affine", "elastic"])
def test_augmenters_agree_across_backends_and_stay_in_range(backend, images, kind):
    aug = make_augmenter(kind)
    coefficients = aug.draw(np.random.default_rng(3), images.shape[0])
    ref = aug(images, coefficients.astype(np.float32), CPU)
    out = aug(backend.put(images), backend.put(coefficients, "float32"), backend)
    xp_assert_close(out, ref, backend, atol=1e-5)
    assert ref.min() >= 0.0 and ref.max() <= 1.0 + 1e-6
    assert not np.allclose(ref, images)  # it did distort
    ink = images.sum(axis=1)
    assert np.all(np.abs(ref.sum(axis=1) - ink) < 0.45 * ink)  # the digit stays in frame


def test_same_rng_same_distortion_other_rng_other(images):
    aug = Augmenter("affine")
    n = images.shape[0]

    def run(seed):  # on the CPU the result is a reused buffer: keep a copy
        return aug(images, aug.draw(np.random.default_rng(seed), n).astype(np.float32), CPU).copy()

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_augmentation():
    with pytest.raises(ConfigError, match="augmentation must be one of auto, none, shift"):
        make_augmenter("mixup")


def test_dropout_gradients_match_central_differences(backend, rng):
    model = MLP(4, (5, 4), 3, activation="tanh", backend=backend, dtype="float64", seed=1)
    X = backend.put(rng.normal(size=(6, 4)))
    T = model.targets(backend.put(rng.integers(0, 3, 6)))
    masks = dropout_masks(model, backend.put(np.arange(100, 106)), 12345, 0.4)
    kept = backend.get(masks[0])
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
        xp_assert_close(grads[key], num, backend, rtol=1e-5, atol=1e-8, err_msg=key)
    model.set_params(base)


@pytest.mark.parametrize(
    "name, checks",
    [
        ("constant", {0: 1.0, 99: 1.0}),
        ("step", {0: 1.0, 49: 1.0, 50: 0.5, 75: 0.25}),
        ("cosine", {0: 1.0, 50: 0.5, 100: 0.0}),
        ("onecycle", {0: 0.1, 30: 1.0, 100: 0.0}),
    ],
)
def test_schedules(name, checks):
    f = make_schedule(name, 100)
    for step, value in checks.items():
        assert f(step) == pytest.approx(value, abs=1e-12)


def test_warmup_ramps_linearly():
    f = make_schedule("constant", 100, warmup_steps=10)
    assert [f(s) for s in (0, 4, 9, 50)] == [0.1, 0.5, 1.0, 1.0]
    assert math.isclose(make_schedule("cosine", 100, 10)(0), 0.1)
