"""Labelled digit sets: loading them, checking them, splitting them, and task targets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constraints import validate
from ..errors import ConfigError, DataError
from .embedded import EMBEDDED, embedded_dir
from .idx import read_idx

__all__ = [
    "Digits",
    "load_digits",
    "validate_digits",
    "stratified_split",
    "stratified_folds",
    "task_targets",
    "N_CLASSES",
]

N_CLASSES = 10


@dataclass
class Digits:
    """Images (N, H, W) and integer labels (N,) on the host, plus where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no {stem} or {stem}.gz (expected MNIST-format IDX files)")


def load_digits(
    source: str | os.PathLike = EMBEDDED,
    split: str = "train",
    n_classes: int = N_CLASSES,
    image_shape: tuple[int, int] | None = None,
) -> Digits:
    """Load images and labels from the embedded subset or a folder of IDX files.

    Parameters
    ----------
    source : "mnist-5k" or path
        A folder with ``train-images-idx3-ubyte[.gz]`` and
        ``train-labels-idx1-ubyte[.gz]`` (and ``t10k-*`` for ``split="test"``).
    split : {"train", "test"}
        Which files; the held-out validation split is cut from ``train`` by
        :func:`stratified_split`.
    image_shape : (rows, cols), optional
        Refuse images of any other size (the command line's networks take 28x28).
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: choose train or test")
    if str(source) == EMBEDDED:
        if split == "test":
            raise DataError(
                "the embedded mnist-5k subset has no test split: use --split val, "
                "or --data DIR with t10k-* files"
            )
        folder = embedded_dir()
    else:
        folder = Path(source)
        if not folder.exists():
            raise DataError(
                f"{folder}: no such folder (use --data mnist-5k or a folder of IDX files)"
            )
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder of IDX files")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    validate_digits(images, labels, n_classes, str(folder))
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        rows, cols = image_shape
        raise DataError(
            f"{folder}: images are {images.shape[1]}x{images.shape[2]} pixels; "
            f"the network takes {rows}x{cols}"
        )
    return Digits(images, labels.astype(np.int64), str(source))


def validate_digits(images: np.ndarray, labels: np.ndarray, n_classes: int, name: str) -> None:
    """Shapes, counts, label range and finiteness of a labelled image set."""
    if images.ndim != 3:
        raise DataError(f"{name}: images must be 3-D (N, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise DataError(f"{name}: the dataset is empty")
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise DataError(f"{name}: labels must be integers")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(
            f"{name}: labels must be in 0..{n_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        raise DataError(f"{name}: images contain NaN or Inf")


def stratified_split(
    labels: np.ndarray,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split into (train indices, validation indices).

    Each class keeps the same share in both parts; the same labels, fraction and
    seed always give the same split, whatever the device.
    """
    val_fraction = validate("val_fraction", val_fraction)
    rng = np.random.default_rng(validate("seed", seed))
    train, val = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = int(round(val_fraction * idx.size))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train_idx, val_idx = np.concatenate(train), np.concatenate(val)
    if train_idx.size == 0 or val_idx.size == 0:
        raise DataError(
            f"{labels.size} samples are too few for a {val_fraction:.0%} validation split"
        )
    return np.sort(train_idx), np.sort(val_idx)


def stratified_folds(labels: np.ndarray, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint index sets, each with every class's share (for cross-validation)."""
    rng = np.random.default_rng(validate("seed", seed))
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        for i, part in enumerate(np.array_split(idx, k)):
            folds[i].append(part)
    return [np.sort(np.concatenate(f)) for f in folds]


def task_targets(labels: np.ndarray, task: str, positive: int | None = None) -> np.ndarray:
    """Digit labels turned into what a task learns: classes, 0/1 (``positive`` vs rest),
    or the digit's value."""
    if validate("task", task) == "classify":
        return labels
    if task == "binary":
        if validate("positive", positive) is None:
            raise ConfigError("--task binary needs --positive DIGIT (0-9)")
        return (labels == positive).astype(np.int64)
    return labels.astype(np.float64)
