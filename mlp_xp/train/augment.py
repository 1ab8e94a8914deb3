"""Data augmentation: random distortions of each training batch, on its device.

LeCun et al. (1998) list distortions as the lever that halves an MLP's error on
digits. Every transform here is one batched resampling of the images -- no
per-image Python loop -- written against ``xp`` like the rest of the math:

``shift``    random translations of up to 2 pixels (whole pixels)
``affine``   rotation (+-12 deg), scaling (0.9-1.1), shear (+-0.15 rad) and
             translation (+-2 px), bilinear
``elastic``  ``affine`` plus a smooth random displacement field (Simard et al.,
             2003): a coarse 4x4 grid of uniform noise spread over the image by
             Gaussian-weighted interpolation

Each kind is linear in a fixed set of per-image coefficients: the source
coordinates of every output pixel are ``coefficients @ basis``, where the basis rows
are the centred row and column grids, a row of ones and (for ``elastic``) the 16
smooth fields of the coarse grid. So a batch's coordinates are one matrix product,
and the coefficients (two rows of 3 or 19 numbers per image) are all the randomness
there is: :meth:`Augmenter.draw` makes them on the host, a whole epoch at a time
(see :mod:`mlp_xp.train.plan`), and the same seed gives the same distortions on
every backend.
"""

from __future__ import annotations

import math

import numpy as np

from ..constraints import validate
from ..errors import ConfigError

__all__ = [
    "make_augmenter",
    "Augmenter",
    "warp",
    "warp_constants",
]


#: Zero rows and columns around each image in :func:`warp`'s padded batch: two, so that
#: coordinates clipped to ``[-2, H]`` need no further limit on the corner.
BORDER = 2


def warp(xp, images, coords, height: int, width: int, constants=None, buffers=None):
    """Bilinear resampling: output pixel ``(n, p)`` reads input ``n`` at ``coords[n, :, p]``.

    ``images`` is (N, H*W); ``coords`` is (N, 2, H*W), source rows then source
    columns, in pixels. Each image gets a border of two zero rows and columns and the
    coordinates are clipped to ``[-2, H]`` (``[-2, W]``): a sample outside the image
    then reads 0 and all four bilinear neighbours of any coordinate, the far edge's
    included, are valid indices (no masks, no syncs, no limit on the corner). The
    clipping is done on the coordinates, never on images; the flat index of each
    top-left neighbour is computed in floating point (exact: it is below the padded
    image's size) and converted once, and the four neighbours are four takes of it from
    shifted views of the padded batch. ``constants`` (from :func:`warp_constants`, kept
    by the caller) saves remaking the padded batch and the offsets at every call.

    ``buffers`` (a dict, kept by the caller; only where the backend takes ``out=``)
    makes every intermediate write into arrays made at the first call and reused after
    (the result too: copy it to keep it past the next call), and each value is written
    over one no longer needed, so few buffers are touched. The arithmetic is the same; on
    the CPU a fresh temporary costs more in page faults than the work done in it, and
    between two training steps every buffer has left the caches: the fewer there are, the
    less the distortion costs.
    """
    n = images.shape[0]
    wp = width + 2 * BORDER
    if constants is None:
        constants = warp_constants(xp, n, height, width, images.dtype, images.device)
    padded, low, high, starts = constants
    inside = (slice(None), slice(BORDER, BORDER + height), slice(BORDER, BORDER + width))
    padded[inside] = xp.reshape(images, (n, height, width))
    op = _Ops(xp, buffers)
    s = op.clip(coords, low, high, "coords")  # in place where buffers are used
    rows, cols = s[:, 0, :], s[:, 1, :]
    corner = op("floor", "flat", rows)  # the top-left neighbour's row ...
    fr = op.into("subtract", rows, rows, corner)  # ... and the distance from it
    left = op("floor", "left", cols)
    fc = op.into("subtract", cols, cols, left)
    flat = op.into("add", corner, op.into("multiply", corner, corner, float(wp)), left)
    index = op("add", "index", op.astype(flat, xp.int64, "index"), starts)
    index = xp.reshape(index, (n * height * width,))
    pixels = xp.reshape(padded, (-1,))

    def at(offset):  # the neighbour ``offset`` along the flat padded batch
        return xp.reshape(op.take(pixels[offset:], index, f"at{offset}"), (n, height * width))

    # the blend, each step written over a value no longer needed (few buffers, on the CPU)
    top, right = at(0), at(1)
    right = op.into("multiply", right, op.into("subtract", right, right, top), fc)
    top = op.into("add", top, top, right)
    bottom, right = at(wp), at(wp + 1)
    right = op.into("multiply", right, op.into("subtract", right, right, bottom), fc)
    bottom = op.into("add", bottom, bottom, right)
    bottom = op.into("multiply", bottom, op.into("subtract", bottom, bottom, top), fr)
    return op.into("add", top, top, bottom)


class _Ops:
    """``xp`` calls that write into named, reused buffers when given a dict of them.

    ``op(name, key, *args)`` is ``xp.<name>(*args)``; with buffers, the first call makes
    ``buffers[key]`` (its result) and later calls write into it with ``out=``. Keys may
    be reused for values that are no longer needed (in-place updates included).
    """

    def __init__(self, xp, buffers=None):
        self.xp, self.buffers = xp, buffers

    def __call__(self, name: str, key: str, *args, **kwargs):
        fn = getattr(self.xp, name)
        if self.buffers is None:
            return fn(*args, **kwargs)
        if key not in self.buffers:
            self.buffers[key] = fn(*args, **kwargs)
            return self.buffers[key]
        return fn(*args, **kwargs, out=self.buffers[key])

    def take(self, x, index, key: str):
        """``xp.take(x, index, axis=0)``; into a buffer with NumPy's ``mode="wrap"``, which
        writes straight into ``out`` (the default mode first gathers into a temporary, in
        case an index is out of range: here none is, the clipping sees to that)."""
        if self.buffers is None:
            return self.xp.take(x, index, axis=0)
        if key not in self.buffers:
            self.buffers[key] = self.xp.take(x, index, axis=0)
            return self.buffers[key]
        return self.xp.take(x, index, axis=0, out=self.buffers[key], mode="wrap")

    def into(self, name: str, out, *args):
        """``xp.<name>(*args)``, written over ``out`` where buffers are used (``out`` is a
        buffer, or a view of one, whose value is no longer needed)."""
        fn = getattr(self.xp, name)
        return fn(*args) if self.buffers is None else fn(*args, out=out)

    def clip(self, coords, low, high, key: str):
        """(N, 2, P) ``coords`` limited to ``[low, high]`` ((2, 1) bounds, one per axis).

        Where buffers are used (NumPy), one ``clip`` pass per axis with scalar bounds (with
        broadcast array bounds NumPy's ``clip`` is several times slower); elsewhere
        ``minimum(maximum(...))`` (array-api-compat's ``clip`` for CuPy syncs).
        """
        if self.buffers is None:
            return self.xp.minimum(self.xp.maximum(coords, low), high)
        if key not in self.buffers:
            self.buffers[key] = self.xp.empty_like(coords)
        out = self.xp.reshape(self.buffers[key], coords.shape)
        for axis in (0, 1):
            lo, hi = float(low[axis, 0]), float(high[axis, 0])
            self.xp.clip(coords[:, axis, :], lo, hi, out=out[:, axis, :])
        return out

    def astype(self, x, dtype, key: str):
        if self.buffers is None:
            return self.xp.astype(x, dtype)
        if key not in self.buffers:
            self.buffers[key] = self.xp.astype(x, dtype)
        else:
            self.buffers[key][...] = x
        return self.buffers[key]


def warp_constants(xp, n: int, height: int, width: int, dtype, device) -> tuple:
    """What :func:`warp` reuses for a batch of ``n``: a zero padded batch (N, H+4, W+4),
    the coordinate limits as (2, 1) columns, and (N, 1) flat offsets of each padded
    image's pixel (0, 0)."""
    hp, wp = height + 2 * BORDER, width + 2 * BORDER
    padded = xp.zeros((n, hp, wp), dtype=dtype, device=device)
    low = xp.asarray([[-float(BORDER)], [-float(BORDER)]], dtype=dtype, device=device)
    high = xp.asarray([[float(height)], [float(width)]], dtype=dtype, device=device)
    starts = (np.arange(n)[:, None] * (hp * wp) + BORDER * wp + BORDER).astype(np.int64)
    return padded, low, high, xp.asarray(starts, device=device)


def _upsampler(size: int, knots: int) -> np.ndarray:
    """(size, knots) matrix mapping a coarse grid to a smooth full-size field."""
    pos = np.linspace(0, knots - 1, size)[:, None]
    grid = np.arange(knots)[None, :]
    w = np.exp(-0.5 * ((pos - grid) / 0.6) ** 2)
    return w / w.sum(axis=1, keepdims=True)


class Augmenter:
    """A batch transform ``augmenter(batch, coefficients, backend) -> batch``.

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
        self.n_coefficients = 3 + (knots * knots if kind == "elastic" else 0)
        self._cache: dict = {}

    def basis(self) -> np.ndarray:
        """(K, H*W) host basis: centred rows, centred columns, ones, then the smooth fields."""
        h, w = self.height, self.width
        rows = np.repeat(np.arange(h) - (h - 1) / 2, w)
        cols = np.tile(np.arange(w) - (w - 1) / 2, h)
        parts = [rows, cols, np.ones(h * w)]
        if self.kind == "elastic":
            up_r, up_c = _upsampler(h, self.knots), _upsampler(w, self.knots)
            fields = np.einsum("ri,cj->ijrc", up_r, up_c).reshape(self.knots**2, h * w)
            parts.extend(fields)
        return np.stack(parts)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Host coefficients (n, 2, K): each image's source-row and source-column rows.

        Row coordinate = ``m00 r + m01 c + (cy + shift_r)`` (+ ``alpha`` times the
        smooth noise), column coordinate likewise, with (r, c) centred pixel indices.
        """
        cy, cx = (self.height - 1) / 2, (self.width - 1) / 2
        if self.kind == "shift":
            shifts: np.ndarray = rng.integers(-int(self.max_shift), int(self.max_shift) + 1, (n, 2))
            m = np.tile([1.0, 0.0, 0.0, 1.0], (n, 1))
        else:
            theta = rng.uniform(-self.rotate, self.rotate, n)
            s = rng.uniform(1 - self.scale, 1 + self.scale, n)
            k = rng.uniform(-self.shear, self.shear, n)
            cos, sin = np.cos(theta) / s, np.sin(theta) / s
            # inverse map (output -> source): rotation then shear, divided by the zoom
            m = np.stack([cos, -sin + k * cos, sin, cos + k * sin], axis=1)
            shifts = rng.uniform(-self.max_shift, self.max_shift, (n, 2))
        out = np.empty((n, 2, self.n_coefficients))
        out[:, 0, :3] = np.stack([m[:, 0], m[:, 1], cy + shifts[:, 0]], axis=1)
        out[:, 1, :3] = np.stack([m[:, 2], m[:, 3], cx + shifts[:, 1]], axis=1)
        if self.kind == "elastic":
            noise = rng.uniform(-1, 1, (n, 2, self.knots**2))
            out[:, :, 3:] = self.alpha * noise
        return out

    def _constants(self, backend, dtype, n: int, slot: int = 0):
        """The device basis, :func:`warp_constants` for a batch of ``n`` and, on the CPU,
        the buffers :func:`warp` reuses (made once per ``slot``)."""
        key = (backend, str(dtype), n, slot)
        if key not in self._cache:
            with backend.scope():
                basis = backend.put(self.basis(), dtype)
                consts = warp_constants(backend.xp, n, self.height, self.width, dtype, basis.device)
            # CuPy's memory pool already reuses its blocks; NumPy's fresh arrays page-fault
            buffers: dict | None = {} if backend.writes_out and backend.kind == "cpu" else None
            self._cache[key] = (basis, consts, buffers)
        return self._cache[key]

    def __call__(self, batch, coefficients, backend, slot: int = 0):
        """Distort ``batch`` (N, H*W) by ``coefficients`` (N, 2, K) on ``backend``'s device.

        On the CPU the result is a buffer the next call with a batch of this size and
        ``slot`` overwrites (the training step, which alternates two slots, uses it
        before then).
        """
        xp, n, dtype = backend.xp, batch.shape[0], batch.dtype
        basis, consts, buffers = self._constants(backend, dtype, n, slot)
        k = self.n_coefficients
        op = _Ops(xp, buffers)
        coords = op("matmul", "coords", xp.reshape(coefficients, (2 * n, k)), basis)
        coords = xp.reshape(coords, (n, 2, -1))
        return warp(xp, batch, coords, self.height, self.width, consts, buffers)


def make_augmenter(name: str, image_shape=(28, 28)) -> Augmenter | None:
    """The batch transform for ``name``, or ``None`` for ``"none"``.

    ``"auto"`` is ``None`` here too: arrays carry no provenance, so nothing says their
    labels survive a distortion. The command line decides ``auto`` from the data
    (:func:`mlp_xp.train.autoaugment.choose_augment`) before training.
    """
    if validate("augment", name) in ("none", "auto"):
        return None
    if image_shape is None:
        raise ConfigError("augmentation needs image inputs (an image_shape)")
    return Augmenter(name, image_shape)
