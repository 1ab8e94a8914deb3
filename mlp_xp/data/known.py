"""Data sets known by their content, and the augmentation their field gives them.

A set is known by what it holds, not by how it was delivered: the **fingerprint** of its
training pixels (md5 of the uint8 images, row by row, with their count and size) is the
same for the embedded digits, a folder holding byte-identical copies of them, gzip'd or
not, and the same images in shards. Sets whose fingerprint is not recorded here are
still known by the published md5 of their gzip'd images file (MNIST, KMNIST,
Fashion-MNIST as their authors distribute them). Everything else is judged from the
images themselves (:mod:`mlp_xp.train.autoaugment`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .digits import Digits
from .download import DATASETS, file_md5

__all__ = [
    "Known",
    "KNOWN_CONTENT",
    "KNOWN_FILES",
    "KNOWN_SHAPES",
    "DIGIT_AUGMENT",
    "fingerprint",
    "identify",
]

#: What handwriting gets: the default recipe's distortions (docs/accuracy.md).
DIGIT_AUGMENT = "affine"

_IMAGES = "train-images-idx3-ubyte.gz"


@dataclass(frozen=True)
class Known:
    """A recognised set: its name, what its images are, the augmentation its field gives
    it, and how it was recognised."""

    name: str
    kind: str
    augment: str
    how: str = ""


_EMBEDDED = Known("the embedded MNIST digits", "handwriting", DIGIT_AUGMENT)
_MNIST = Known("MNIST", "handwriting", DIGIT_AUGMENT)
#: Fashion-MNIST gets none: at the 15 epochs of docs/accuracy.md, whole-pixel shifts cost
#: it 2.2 points of held-out accuracy and the digit distortions 3.3 (12,000 held-out
#: images of its training set).
_FASHION = Known("Fashion-MNIST", "clothing photographs", "none")

#: fingerprint of a set's training pixels -> the set.
KNOWN_CONTENT: dict[str, Known] = {
    "a76d97e80a6b3dcfec274ad7913587b7": _EMBEDDED,
    "166db847e020e6d90391b589d0446ca0": _MNIST,
    "0738d0d0cca4666a9967ce765fdfd75e": _FASHION,
}

#: published md5 of a set's ``train-images-idx3-ubyte.gz`` -> the set.
KNOWN_FILES: dict[str, Known] = {
    DATASETS["mnist"][1][_IMAGES]: _MNIST,
    DATASETS["kmnist"][1][_IMAGES]: Known("KMNIST", "handwriting", DIGIT_AUGMENT),
    DATASETS["fashion-mnist"][1][_IMAGES]: _FASHION,
}

_ROWS = 4096


def fingerprint(images) -> str:
    """md5 of ``images``' uint8 pixels, image by image, with their count and size.

    ``images`` is an (N, H, W) or (N, H*W) array, or a :class:`~mlp_xp.data.shards.Shards`;
    it is read a bounded number of rows at a time.
    """
    n = int(images.shape[0])
    size = int(np.prod(images.shape[1:]))
    h = hashlib.md5(f"{n}x{size} uint8\n".encode(), usedforsecurity=False)
    if np.dtype(images.dtype) != np.uint8:
        h.update(b"not uint8")
        return h.hexdigest()
    for start in range(0, n, _ROWS):
        h.update(np.ascontiguousarray(images[start : start + _ROWS]).tobytes())
    return h.hexdigest()


#: (images, pixels an image) of the sets in :data:`KNOWN_CONTENT`: others are not hashed.
KNOWN_SHAPES = {(5000, 784), (60000, 784)}


def identify(digits: Digits) -> Known | None:
    """The known set ``digits`` is, by its pixels' fingerprint or its files' published md5.

    The pixels are hashed only when their count and size are those of a set in
    :data:`KNOWN_CONTENT`; the published checksums are of gzip'd files, so a raw file is
    matched through a gzip'd copy beside it, where there is one.
    """
    shape = (int(digits.images.shape[0]), int(np.prod(digits.images.shape[1:])))
    if shape in KNOWN_SHAPES:
        known = KNOWN_CONTENT.get(fingerprint(digits.images))
        if known is not None:
            return Known(known.name, known.kind, known.augment, "recognised by its pixels")
    for path in map(Path, digits.files):
        packed = path if path.suffix == ".gz" else path.with_name(path.name + ".gz")
        if "images" in path.name and packed.is_file():
            known = KNOWN_FILES.get(file_md5(packed))
            if known is not None:
                how = "recognised by its file's published checksum"
                return Known(known.name, known.kind, known.augment, how)
    return None
