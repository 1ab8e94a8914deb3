"""Which data set a ``--data`` source is, and the augmentation ``auto`` gives it.

Digit-style distortions (rotation, shear, scaling, elastic) keep the label of a
handwritten character, which is why they help on MNIST; on other images they can
destroy the class evidence. So ``augment="auto"`` distorts only data known to be
handwriting: the embedded digits, or a folder whose ``train-images-idx3-ubyte.gz``
has the published checksum of a handwriting set. A set known not to be handwriting
gets its field's standard augmentation; a folder nothing recognises gets none, and
the reason says how to turn it on.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..constraints import validate
from .download import DATASETS
from .embedded import EMBEDDED

__all__ = ["KNOWN_SETS", "DIGIT_AUGMENT", "AugmentChoice", "identify", "choose_augment"]

#: What ``auto`` gives handwriting: the default recipe's distortions (docs/accuracy.md).
DIGIT_AUGMENT = "affine"

_IMAGES = "train-images-idx3-ubyte.gz"

#: md5 of a set's published ``train-images-idx3-ubyte.gz`` -> (name, kind, augmentation).
#: Handwriting gets the digit distortions; Fashion-MNIST gets whole-pixel shifts (the
#: translations of its usual pad-and-crop; no rotation, shear or elastic field).
KNOWN_SETS: dict[str, tuple[str, str, str]] = {
    DATASETS["mnist"][1][_IMAGES]: ("MNIST", "handwriting", DIGIT_AUGMENT),
    DATASETS["kmnist"][1][_IMAGES]: ("KMNIST", "handwriting", DIGIT_AUGMENT),
    DATASETS["fashion-mnist"][1][_IMAGES]: ("Fashion-MNIST", "clothing photographs", "shift"),
}


@dataclass(frozen=True)
class AugmentChoice:
    """The augmentation a run uses, what was asked for, and why."""

    augment: str
    requested: str
    dataset: str | None  # the recognised set's name, if any
    reason: str

    def line(self) -> str:
        return f"augmentation: {self.augment} ({self.reason})"

    def to_meta(self) -> dict:
        return {
            "augment": self.augment,
            "requested": self.requested,
            "dataset": self.dataset,
            "reason": self.reason,
        }


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identify(source: str | os.PathLike) -> tuple[str, str, str] | None:
    """``(name, kind, augmentation)`` of a known set, or ``None``.

    The embedded digits are known by name; a folder by the md5 of its gzip'd training
    images (an uncompressed copy cannot be matched against the published sums).
    """
    if str(source) == EMBEDDED:
        return ("the embedded MNIST digits", "handwriting", DIGIT_AUGMENT)
    path = Path(source) / _IMAGES
    if not path.is_file():
        return None
    return KNOWN_SETS.get(_md5(path))


def choose_augment(requested: str, source: str | os.PathLike) -> AugmentChoice:
    """The augmentation for ``requested`` (``auto`` decides by ``source``)."""
    requested = validate("augment", requested)
    if requested != "auto":
        return AugmentChoice(requested, requested, None, "as asked")
    known = identify(source)
    if known is None:
        return AugmentChoice(
            "none",
            "auto",
            None,
            f"auto: {source} is not a data set recognised by its published checksum, so no "
            f"distortion is assumed to keep its labels; --augment {DIGIT_AUGMENT} turns on "
            "the digit distortions, --augment shift whole-pixel shifts",
        )
    name, kind, augment = known
    what = "recognised by its published checksum" if str(source) != EMBEDDED else "built in"
    return AugmentChoice(augment, "auto", name, f"auto: {name}, {kind}, {what}")
