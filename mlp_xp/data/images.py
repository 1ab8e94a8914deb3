"""Photos and drawings of digits -> MNIST's convention (needs Pillow, the ``images`` extra).

MNIST digits are grayscale with bright ink on a dark background, the ink's
bounding box scaled to fit 20x20 (keeping its aspect ratio), placed in a 28x28
field so that its centre of mass sits at the centre. :func:`load_digit_image`
does the same to any image file: grayscale, invert when the ink is dark on a
light background, stretch contrast, crop to the ink, scale to fit 20x20, and
centre by centre of mass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, NoDigitError
from .pixels import BLANK_CONTRAST

__all__ = ["load_digit_image", "to_mnist"]


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ConfigError(
            "reading image files needs Pillow: pip install 'mlp-xp[images]'"
        ) from None
    return Image, ImageOps


def load_digit_image(path, name: str | None = None) -> np.ndarray:
    """Read an image file of one digit as a (28, 28) uint8 array in MNIST's convention.

    ``path`` may also be a binary file object (an upload held in memory, named ``name``
    in messages): the same decoding, limits and conversion as for a file.
    """
    Image, ImageOps = _pil()
    source = path if hasattr(path, "read") else Path(path)
    path = (name or "image") if hasattr(path, "read") else source  # what messages call it
    try:
        with Image.open(source) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not an image Pillow can read ({exc})") from None
    return to_mnist(gray, str(path))


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """A 2-D grayscale array in [0, 1] (any size, any polarity) -> (28, 28) uint8."""
    Image, _ = _pil()
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise DataError(f"{name}: expected a 2-D grayscale image, got shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: make the ink bright
        gray = 1.0 - gray
        border = 1.0 - border
    ink = np.clip(gray - np.median(border), 0.0, None)
    if ink.max() < BLANK_CONTRAST:
        raise NoDigitError(f"{name}: no digit found (the image is blank: no contrast)")
    ink = ink / ink.max()
    rows = np.flatnonzero(ink.max(axis=1) > 0.2)
    cols = np.flatnonzero(ink.max(axis=0) > 0.2)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(np.uint8(np.round(crop * 255))).resize(size, Image.LANCZOS)
    digit = np.asarray(small, dtype=np.float64)
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
