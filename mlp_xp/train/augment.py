"""Data augmentation: random distortions of each training batch, on its device.

LeCun et al. (1998) list distortions as the lever that halves an MLP's error on
digits. Every transform here is one batched resampling of the images -- no
per-image Python loop -- written against ``xp`` like the rest of the math:

``shift``    random translations of up to 2 pixels (whole pixels)
``affine``   rotation (+-12 deg), scaling (0.9-1.1), shear (+-0.15 rad) and
             translation (+-2 px), bilinear
``elastic``  ``affine`` plus a smooth random displacement field (Simard et al.,
             2003): a coarse 4x4 grid of uniform noise spread over the image by
             Gaussian-weighted interpolation (a fixed matrix per axis)

The random parameters are drawn from the host generator the training loop
passes in (small arrays: a few numbers per image), then moved to the device.
The same seed draws the same distortions on every backend.
"""

from __future__ import annotations

import math

import numpy as np

from ..constraints import validate
from ..errors import ConfigError

__all__ = ["make_augmenter", "Augmenter", "warp"]


def warp(xp, images, src_rows, src_cols, height: int, width: int):
    """Bilinear resampling: output pixel (n, r, c) reads input at (src_rows, src_cols).

    ``images`` is (N, H*W); ``src_rows``/``src_cols`` are (N, H, W) float
    coordinates. The images get a one-pixel ring of background (0) and the
    coordinates are limited to that ring, so a sample outside the image reads
    0 and all four bilinear neighbours are valid indices (no masks, no syncs).
    """
    n = images.shape[0]
    hp, wp = height + 2, width + 2
    img = xp.reshape(images, (n, height, width))
    zc = xp.zeros((n, height, 1), dtype=images.dtype)
    img = xp.concat([zc, img, zc], axis=2)
    zr = xp.zeros((n, 1, wp), dtype=images.dtype)
    flat = xp.reshape(xp.concat([zr, img, zr], axis=1), (n * hp * wp,))
    # padded coordinates in [0, H + 1]; the top-left corner (r0, c0) stops one short
    # of the far ring, so at the far edge the weight fr (fc) is 1 and reads the ring
    r = xp.minimum(xp.maximum(src_rows, -1.0), float(height)) + 1.0
    c = xp.minimum(xp.maximum(src_cols, -1.0), float(width)) + 1.0
    r0 = xp.minimum(xp.floor(r), float(height))
    c0 = xp.minimum(xp.floor(c), float(width))
    fr, fc = r - r0, c - c0
    base = xp.reshape(xp.arange(n, dtype=xp.int32) * (hp * wp), (n, 1, 1))
    index = xp.reshape(base + xp.astype(r0, xp.int32) * wp + xp.astype(c0, xp.int32), (-1,))

    def at(offset):
        return xp.reshape(xp.take(flat, index + offset, axis=0), r.shape)

    top = at(0)
    top = top + fc * (at(1) - top)
    bottom = at(wp)
    bottom = bottom + fc * (at(wp + 1) - bottom)
    return xp.reshape(top + fr * (bottom - top), (n, height * width))


def _upsampler(size: int, knots: int) -> np.ndarray:
    """(size, knots) matrix mapping a coarse grid to a smooth full-size field."""
    pos = np.linspace(0, knots - 1, size)[:, None]
    grid = np.arange(knots)[None, :]
    w = np.exp(-0.5 * ((pos - grid) / 0.6) ** 2)
    return w / w.sum(axis=1, keepdims=True)


class Augmenter:
    """A batch transform ``augmenter(batch, rng, backend) -> batch`` on ``backend``'s device.

    Parameters
    ----------
    kind : {"shift", "affine", "elastic"}
    image_shape : (H, W)
    """

    def __init__(
        self,
        kind: str,
        image_shape=(28, 28),
        max_shift: float = 2.0,
        rotate_deg: float = 12.0,
        scale: float = 0.1,
        shear: float = 0.15,
        elastic_alpha: float = 1.5,
        knots: int = 4,
    ):
        self.kind = kind
        self.height, self.width = (int(v) for v in image_shape)
        self.max_shift, self.rotate, self.scale, self.shear = (
            max_shift,
            math.radians(rotate_deg),
            scale,
            shear,
        )
        self.alpha = elastic_alpha
        self.knots = knots
        self._const: dict = {}

    def _constants(self, backend, dtype):
        key = (backend, str(dtype))
        if key not in self._const:
            h, w = self.height, self.width
            rows = np.arange(h, dtype=np.float64)[None, :, None] - (h - 1) / 2
            cols = np.arange(w, dtype=np.float64)[None, None, :] - (w - 1) / 2
            up_r, up_c = _upsampler(h, self.knots), _upsampler(w, self.knots)
            self._const[key] = backend.put((rows, cols, up_r, up_c.T), dtype)
        return self._const[key]

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Host parameters (n, 6): the 2x2 matrix row-major, then row and column shifts."""
        if self.kind == "shift":
            shifts = rng.integers(-int(self.max_shift), int(self.max_shift) + 1, (n, 2))
            return np.concatenate([np.tile([1.0, 0.0, 0.0, 1.0], (n, 1)), shifts], axis=1)
        theta = rng.uniform(-self.rotate, self.rotate, n)
        s = rng.uniform(1 - self.scale, 1 + self.scale, n)
        k = rng.uniform(-self.shear, self.shear, n)
        cos, sin = np.cos(theta) / s, np.sin(theta) / s
        # inverse map (output -> source): rotation then shear, divided by the zoom
        m = np.stack([cos, -sin + k * cos, sin, cos + k * sin], axis=1)
        shifts = rng.uniform(-self.max_shift, self.max_shift, (n, 2))
        return np.concatenate([m, shifts], axis=1)

    def __call__(self, batch, rng: np.random.Generator, backend):
        xp, n, dtype = backend.xp, batch.shape[0], batch.dtype
        rows, cols, up_r, up_c_t = self._constants(backend, dtype)
        p = backend.put(self.draw(rng, n), dtype)
        col = [xp.reshape(p[:, i], (n, 1, 1)) for i in range(6)]
        cy, cx = (self.height - 1) / 2, (self.width - 1) / 2
        src_r = col[0] * rows + col[1] * cols + (cy + col[4])
        src_c = col[2] * rows + col[3] * cols + (cx + col[5])
        if self.kind == "elastic":
            noise = backend.put(rng.uniform(-1, 1, (2, n, self.knots, self.knots)), dtype)
            src_r = src_r + self.alpha * (up_r @ noise[0, ...] @ up_c_t)
            src_c = src_c + self.alpha * (up_r @ noise[1, ...] @ up_c_t)
        return warp(xp, batch, src_r, src_c, self.height, self.width)


def make_augmenter(name: str, image_shape=(28, 28)) -> Augmenter | None:
    """The batch transform for ``name``, or ``None`` for ``"none"``."""
    if validate("augment", name) == "none":
        return None
    if image_shape is None:
        raise ConfigError("augmentation needs image inputs (an image_shape)")
    return Augmenter(name, image_shape)
