"""From pixels to network inputs, and the normalization model files carry.

A network is trained on pixels mapped to inputs by one affine rule,
``x = pixel * scale + offset`` (the digit default: ``scale = 1/255``, so inputs
lie in [0, 1]). The rule is stored in every model file's metadata
(``normalization``) and read back by ``evaluate``, ``predict`` and ``plot``, so
a model is always fed what it was trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelFileError
from ..npyfile import read_npy
from .idx import read_idx

__all__ = ["Normalization", "DIGITS", "scale_images", "load_array_file"]


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

    def apply(self, images, dtype="float32") -> np.ndarray:
        """(N, H, W), (N, H*W) or one (H, W) image of pixels -> (N, H*W) inputs.

        Integer pixels are 0-255. Float pixels in [0, 1] are read as fractions
        of full brightness (pixel / 255), larger floats as 0-255 values.
        """
        images = np.asarray(images)
        if images.shape == tuple(self.image_shape):
            images = images[None]
        flat = images.reshape(images.shape[0], -1)
        if flat.dtype.kind == "f":
            if not np.all(np.isfinite(flat)):
                raise DataError("input contains NaN or Inf")
            fractions = flat.size and flat.max() <= 1.0
            factor = self.scale * (255.0 if fractions else 1.0)
        elif flat.dtype.kind in "iub":
            factor = self.scale
        else:
            raise DataError(f"cannot use {flat.dtype} pixels as input")
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
                tuple(int(v) for v in meta.get("image_shape", (28, 28))),
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
    if arr.ndim not in (2, 3) or arr.shape[0] == 0:
        raise DataError(
            f"{path}: expected images of shape (N, 28, 28) or (N, 784), got {arr.shape}"
        )
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: cannot use {arr.dtype} values as pixels")
    return arr
