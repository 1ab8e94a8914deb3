"""Data: the IDX format, the embedded digits, splits, pixels to inputs, images, downloads.

Images from files need Pillow (:mod:`mlp_xp.data.images`, the ``images`` extra);
:mod:`mlp_xp.data.download` fetches full datasets. Both are imported on use.
"""

from .digits import (
    N_CLASSES,
    Digits,
    load_digits,
    stratified_folds,
    stratified_split,
    task_targets,
    validate_digits,
)
from .embedded import EMBEDDED, embedded_dir
from .idx import parse_idx, read_idx, write_idx
from .pixels import DIGITS, Normalization, load_array_file, scale_images

__all__ = [
    "Digits",
    "load_digits",
    "validate_digits",
    "stratified_split",
    "stratified_folds",
    "task_targets",
    "N_CLASSES",
    "EMBEDDED",
    "embedded_dir",
    "parse_idx",
    "read_idx",
    "write_idx",
    "Normalization",
    "DIGITS",
    "scale_images",
    "load_array_file",
]
