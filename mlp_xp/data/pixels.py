"""From pixels to network inputs, and the normalization model files carry.

A network is trained on pixels mapped to inputs by one affine rule,
``x = pixel * scale + offset`` (the digit default: ``scale = 1/255``, so inputs
lie in [0, 1]). The rule is stored in every model file's metadata
(``normalization``) and read back by ``evaluate``, ``predict`` and ``plot``, so
a model is always fed what it was trained on.

Pixels come in two conventions, and nothing else is guessed at: integers (and
floats) from 0 to 255, or floats in [0, 1] as fractions of full brightness
(booleans: ink or not). Floats above 1 but within [0, 255] are read as 0-255
values with a warning that says so; values outside both ranges are refused.
An image whose brightness spreads over less than :data:`BLANK_CONTRAST` of the
full range holds no digit (:func:`blank_images`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from ..errors import DataError, ModelFileError
from ..npyfile import read_npy
from .idx import read_idx

__all__ = [
    "Normalization",
    "DIGITS",
    "BLANK_CONTRAST",
    "blank_images",
    "pixel_range",
    "scale_images",
    "load_array_file",
]

#: An image whose brightest and darkest pixels differ by less than this fraction of
#: full brightness holds no digit (``predict`` says "no digit found").
BLANK_CONTRAST = 0.05


def _flat(images, image_shape=None) -> np.ndarray:
    """(N, H, W), (N, H*W) or one (H, W) image -> (N, H*W), no copy."""
    images = np.asarray(images)
    if images.ndim <= 1 or (image_shape is not None and images.shape == tuple(image_shape)):
        images = images[None]
    return images.reshape(images.shape[0], -1)


def pixel_range(images, name: str = "input") -> tuple[float, str]:
    """How to read ``images``: ``(full brightness, note)``.

    Full brightness is 1.0 for fractions in [0, 1] (floats, or booleans) and
    255.0 for 0-255 values (integers, or floats above 1 within [0, 255]). The
    note is ``""`` unless an assumption was made: it says which, for a warning.

    Raises
    ------
    DataError
        NaN or Inf, non-numeric pixels, or values outside both conventions.
    """
    flat = np.asarray(images)
    kind = flat.dtype.kind
    if kind not in "biuf":
        raise DataError(f"{name}: cannot use {flat.dtype} values as pixels")
    if kind == "b" or flat.size == 0:
        return (1.0 if kind == "b" else 255.0), ""
    if kind == "f" and not np.all(np.isfinite(flat)):
        raise DataError(f"{name}: input contains NaN or Inf")
    low, high = flat.min(), flat.max()
    if kind == "f" and low >= 0 and high <= 1:
        return 1.0, ""
    if low < 0 or high > 255:
        expected = "fractions in [0, 1] or 0-255 values" if kind == "f" else "0-255 values"
        raise DataError(f"{name}: pixel values range from {low:g} to {high:g}; expected {expected}")
    if kind == "f":
        return 255.0, (
            f"{name}: float pixels go up to {high:g}, so they were read as 0-255 values "
            "(not as fractions of full brightness in [0, 1])"
        )
    return 255.0, ""


def blank_images(images, name: str = "input", image_shape=(28, 28)) -> np.ndarray:
    """One bool per image of (N, H, W), (N, H*W) or one (H, W) image: True where it
    holds no digit (contrast below :data:`BLANK_CONTRAST` of full brightness: all
    dark, all bright, a uniform grey)."""
    flat = _flat(images, image_shape)
    full, _ = pixel_range(flat, name)
    if flat.shape[1] == 0:
        return np.ones(flat.shape[0], dtype=bool)
    values = flat.astype(np.float64) if flat.dtype.kind == "b" else flat
    spread = values.max(axis=1).astype(np.float64) - values.min(axis=1)
    return spread < BLANK_CONTRAST * full


@dataclass(frozen=True)
class Normalization:
    """How raw pixels (0-255) become inputs: ``x = pixel * scale + offset``, flattened.

    ``image_shape`` is one image's (rows, cols); ``ink`` says which way round
    the pixels are (MNIST's ink is bright on a dark background).
    """

    scale: float = 1.0 / 255.0
    offset: float = 0.0
    image_shape: tuple[int, int] = (28, 28)
    ink: str = "bright on dark"

    def apply(self, images, dtype="float32", name: str = "input") -> np.ndarray:
        """(N, H, W), (N, H*W) or one (H, W) image of pixels -> (N, H*W) inputs.

        Pixels are read by :func:`pixel_range`: integers as 0-255, floats in
        [0, 1] as fractions of full brightness (pixel / 255), floats above 1
        within [0, 255] as 0-255 values with a warning naming ``name``;
        anything else raises :class:`~mlp_xp.errors.DataError`.
        """
        flat = _flat(images, self.image_shape)
        full, note = pixel_range(flat, name)
        if note:
            warnings.warn(note, stacklevel=2)
        factor = self.scale * 255.0 / full
        out = flat.astype(dtype)  # one float copy of the data, scaled in place
        if factor != 1.0:
            out *= np.asarray(factor, dtype)
        if self.offset:
            out += np.asarray(self.offset, dtype)
        return out

    def to_meta(self) -> dict:
        """The JSON-able form stored in model files."""
        return {
            "scale": self.scale,
            "offset": self.offset,
            "image_shape": list(self.image_shape),
            "ink": self.ink,
        }

    @classmethod
    def from_meta(cls, meta: dict | None) -> Normalization:
        """The normalization a model file records (files that record none get the default)."""
        if meta is None:
            return cls()
        try:
            norm = cls(
                float(meta["scale"]),
                float(meta.get("offset", 0.0)),
                cast(tuple[int, int], tuple(int(v) for v in meta.get("image_shape", (28, 28)))),
                str(meta.get("ink", cls.ink)),
            )
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"unusable normalization in the model file: {meta!r}") from None
        if not (np.isfinite(norm.scale) and norm.scale > 0 and np.isfinite(norm.offset)):
            raise ModelFileError(f"unusable normalization in the model file: {meta!r}")
        return norm


#: The digit default: 0-255 pixels to inputs in [0, 1].
DIGITS = Normalization()


def scale_images(images, dtype="float32") -> np.ndarray:
    """Flatten (N, H, W) digit images to (N, H*W) rows scaled to [0, 1] (:data:`DIGITS`)."""
    return DIGITS.apply(images, dtype)


def load_array_file(path: str | os.PathLike) -> np.ndarray:
    """Images from an IDX file or a ``.npy`` file (no pickles; sizes checked first)."""
    path = Path(path)
    if path.suffix == ".npy":
        arr = read_npy(path)
    else:
        arr = read_idx(path)
    if arr.ndim == 2 and arr.shape == (28, 28):
        arr = arr[None]
    if arr.shape[1:] not in ((28, 28), (784,)) or arr.shape[0] == 0:
        raise DataError(
            f"{path}: expected images of shape (N, 28, 28) or (N, 784), got {arr.shape}"
        )
    pixel_range(arr, str(path))  # refuses values outside both conventions, naming the file
    return arr
