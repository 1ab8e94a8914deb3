"""Photos and drawings of digits -> MNIST's convention (needs Pillow, the ``images`` extra).

MNIST digits are grayscale with bright ink on a dark background, the ink's
bounding box scaled to fit 20x20 (keeping its aspect ratio), placed in a 28x28
field so that its centre of mass sits at the centre. :func:`load_digit_image`
does the same to any image file: grayscale, invert when the ink is dark on a
light background, subtract the paper (a smooth surface fitted to the pixels that are
not ink, so uneven light is not taken for ink: :func:`paper`), stretch contrast, crop
to the ink, scale to fit 20x20, and centre by centre of mass.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, NoDigitError
from .pixels import BLANK_CONTRAST
from .plausible import measure_crop

__all__ = ["load_digit_image", "to_mnist", "MAX_PIXELS"]

#: The most pixels an image file may have: 8192x8192, more than a 50-megapixel camera's
#: photo. Judged from the file's header, before anything is decoded: the conversion holds
#: the decoded image, its grayscale and a float copy (about 13 bytes a pixel, 0.9 GB here).
MAX_PIXELS = 8192 * 8192


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ConfigError("reading image files needs Pillow: pip install '.[images]'") from None
    return Image, ImageOps


def load_digit_image(path, info: dict | None = None, name: str | None = None) -> np.ndarray:
    """Read an image file of one digit as a (28, 28) uint8 array in MNIST's convention
    (``info``, when given, receives what :func:`to_mnist` measured).

    ``path`` may also be a binary file object (an upload held in memory, named ``name``
    in messages): the same decoding, limits and conversion as for a file.
    """
    Image, ImageOps = _pil()
    source = path if hasattr(path, "read") else Path(path)
    path = (name or "image") if hasattr(path, "read") else source  # what messages call it
    try:
        with warnings.catch_warnings():  # the size is judged below, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(source)  # lazy: reads the header, decodes nothing
        with opened as img:
            _check_size(img, path)
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except DataError:  # the size refused above (a ValueError, like Pillow's own)
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Image.DecompressionBombError as exc:  # past twice Pillow's own limit
        raise DataError(f"{path}: more pixels than a digit photo needs ({exc})") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not an image Pillow can read ({exc})") from None
    return to_mnist(gray, str(path), info)


def _check_size(img, path: Path) -> None:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"{path}: {width}x{height} pixels ({width * height / 1e6:,.1f} megapixels) is more "
            f"than a digit photo needs (at most {MAX_PIXELS / 1e6:.1f} megapixels); scale it down"
        )


def paper(gray: np.ndarray, rounds: int = 4) -> np.ndarray:
    """The paper's brightness under every pixel of ``gray`` (ink bright, paper dark): a
    quadratic surface fitted by least squares to the pixels that are not ink.

    Uneven light (a shadow, a lamp to one side, a vignette) makes the paper a smooth
    surface, not one level. The first fit takes the darker half of the pixels (paper while
    ink covers less than half the image); each round then refits the surface to the pixels
    within a robust spread (2.5 median absolute deviations) above it, so the ink, which
    lies far above it, stays out of the fit. Fitted on a grid of at most 64 pixels a side;
    one level for images smaller than 8 pixels a side.
    """
    h, w = gray.shape
    if min(h, w) < 8:
        return np.full_like(gray, np.median(gray))
    step = max(1, max(h, w) // 64)
    grid = gray[::step, ::step]

    def terms(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        y, x = np.meshgrid(rows / h * 2 - 1, cols / w * 2 - 1, indexing="ij")
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)

    basis = terms(np.arange(0, h, step), np.arange(0, w, step))
    frame = np.ones(grid.shape, dtype=bool)
    frame[1:-1, 1:-1] = False
    # the darker half is paper while ink covers less than half; the frame shows the paper's
    # shading at the edges, which a fit to the darker half alone would have to guess
    keep = (grid <= np.median(grid)) | (frame & (grid <= np.median(grid[frame])))
    for _ in range(rounds):
        coef, *_ = np.linalg.lstsq(basis[keep], grid[keep], rcond=None)
        residual = grid - basis @ coef
        spread = 1.4826 * np.median(np.abs(residual[keep]))
        keep = residual <= max(2.5 * spread, 0.02)
    return terms(np.arange(h), np.arange(w)) @ coef


def to_mnist(gray: np.ndarray, name: str = "image", info: dict | None = None) -> np.ndarray:
    """A 2-D grayscale array in [0, 1] (any size, any polarity) -> (28, 28) uint8.

    ``info``, when given, receives what :func:`~mlp_xp.data.plausible.measure_crop` finds
    in the crop to the ink, in the input's own pixels (a dot is no digit, nor is noise).
    """
    Image, _ = _pil()
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise DataError(f"{name}: expected a 2-D grayscale image, got shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: make the ink bright
        gray = 1.0 - gray
    ink = np.clip(gray - paper(gray), 0.0, None)  # the paper's own shading is not ink
    if ink.max() < BLANK_CONTRAST:
        raise NoDigitError(f"{name}: no digit found (the image is blank: no contrast)")
    ink = ink / ink.max()
    rows = np.flatnonzero(ink.max(axis=1) > 0.2)
    cols = np.flatnonzero(ink.max(axis=0) > 0.2)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    if info is not None:
        info.update(measure_crop(crop))
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(np.uint8(np.round(crop * 255))).resize(size, Image.LANCZOS)
    digit = np.asarray(small, dtype=np.float64)
    digit *= 255.0 / max(digit.max(), 1.0)  # a thin pen stroke stays as bright as MNIST's ink
    canvas = np.zeros((28, 28))
    top, left = (28 - digit.shape[0]) // 2, (28 - digit.shape[1]) // 2
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    mass = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(28)).sum() / mass
    cx = (canvas.sum(axis=0) * np.arange(28)).sum() / mass
    dy = int(np.clip(round(13.5 - cy), -top, 28 - top - digit.shape[0]))
    dx = int(np.clip(round(13.5 - cx), -left, 28 - left - digit.shape[1]))
    out = np.zeros((28, 28))
    out[top + dy : top + dy + digit.shape[0], left + dx : left + dx + digit.shape[1]] = digit
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
