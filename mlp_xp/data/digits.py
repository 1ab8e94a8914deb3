"""Labelled digit sets: loading them, checking them, splitting them, and task targets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import budget
from ..constraints import validate
from ..errors import ConfigError, DataError, MemoryBudgetError
from .embedded import EMBEDDED, embedded_dir
from .files import SPLIT_PREFIX, Part, split_parts
from .idx import _declared_bytes, idx_header, is_gzip, map_idx, read_idx
from .shards import Shards, as_images

__all__ = [
    "Digits",
    "load_digits",
    "validate_digits",
    "validate_labels",
    "stratified_split",
    "recorded_split",
    "stratified_folds",
    "task_targets",
    "N_CLASSES",
]

N_CLASSES = 10


@dataclass
class Digits:
    """Images and integer labels (N,) on the host, where they came from, and the files read.

    ``images`` is an (N, H, W) array, or with ``load_digits(..., mapped=True)`` a
    :class:`~mlp_xp.data.shards.Shards` indexed like an (N, H*W) uint8 array.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    files: tuple[Path, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _folder(source: str | os.PathLike, split: str) -> Path:
    if split not in SPLIT_PREFIX:
        raise DataError(f"unknown split {split!r}: choose train or test")
    if str(source) == EMBEDDED:
        if split == "test":
            raise DataError(
                "the embedded mnist-5k subset has no test split: use --split val, "
                "or --data DIR with t10k-* files"
            )
        return embedded_dir()
    folder = Path(source)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder (use --data mnist-5k or a folder of IDX files)")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of IDX files")
    return folder


def _check_sizes(folder: Path, parts: list[Part], mapped: bool, stream: bool) -> None:
    """Before any payload is read (headers only): each part's images and labels agree in
    number, and what will be read into memory fits in what the host has available."""
    in_memory = 0
    for part in parts:
        dtype, dims = idx_header(part.images)
        label_dtype, label_dims = idx_header(part.labels)
        if len(label_dims) != 1 or dims[0] != label_dims[0]:
            raise DataError(f"{part.images}: {dims[0]:,} images but labels of shape "
                            f"{label_dims} in {part.labels.name}")  # fmt: skip
        if not mapped or (not stream and is_gzip(part.images)):
            in_memory += _declared_bytes(dtype, dims)
        in_memory += label_dims[0] * (label_dtype.itemsize + 8)  # read, then as int64
    room, what = budget.host_available()
    if room is not None and in_memory > room:
        raise MemoryBudgetError(
            f"{folder}: its images and labels need {budget.size(in_memory)} of memory, but "
            f"{budget.size(max(room, 0))} is {what}; use a smaller data set, or stream it a batch "
            "at a time (train --stream)"
        )


def _read_part(part: Part, mapped: bool, width: tuple | None, stream: bool = False) -> tuple:
    if stream and is_gzip(part.images):  # decompressed once into the cache, then mapped
        from .cache import decompressed

        images = map_idx(decompressed(part.images))
    else:
        images = map_idx(part.images) if mapped else read_idx(part.images)
    labels = read_idx(part.labels)
    if mapped and images.dtype != np.uint8:
        raise DataError(f"{part.images}: expected uint8 pixels, got {images.dtype}")
    if images.ndim != 3:
        raise DataError(f"{part.images}: images must be 3-D (N, rows, cols), got {images.shape}")
    if labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{part.images}: {len(images)} images but labels of shape "
                        f"{labels.shape} in {part.labels.name}")  # fmt: skip
    if width is not None and images.shape[1:] != width:
        raise DataError(f"{part.images}: images of {images.shape[1:]}, the first shard's are "
                        f"{width}")  # fmt: skip
    return images, labels


def load_digits(
    source: str | os.PathLike = EMBEDDED,
    split: str = "train",
    n_classes: int = N_CLASSES,
    image_shape: tuple[int, int] | None = None,
    *,
    mapped: bool = False,
    stream: bool = False,
) -> Digits:
    """Load images and labels from the embedded subset or a folder of IDX files.

    The one reader of every command: the folder's files are found by
    :func:`~mlp_xp.data.files.split_parts` (shards joined in name order, a file present
    raw and gzip'd read once), every part's header checked against its payload and the
    labels against ``n_classes``. Before any payload is read, the headers of every file
    are checked against each other and what will be held in memory against what the host
    has available (:class:`~mlp_xp.errors.MemoryBudgetError`).

    Parameters
    ----------
    source : "mnist-5k" or path
        A folder with ``train-images-idx3-ubyte[.gz]`` and
        ``train-labels-idx1-ubyte[.gz]`` (and ``t10k-*`` for ``split="test"``), or
        shards ``train-00-images-idx3-ubyte[.gz]``, ...
    split : {"train", "test"}
        Which files; the held-out validation split is cut from ``train`` by
        :func:`stratified_split`.
    image_shape : (rows, cols), optional
        Refuse images of any other size (the command line's networks take 28x28).
    mapped : bool
        Memory-map uncompressed files and return the images as a
        :class:`~mlp_xp.data.shards.Shards` (an (N, H*W) uint8 array read a rows at a
        time) instead of reading them into one (N, H, W) array.
    stream : bool
        As ``mapped``, and gzip'd images files too: each is decompressed once into the
        user's cache (:func:`~mlp_xp.data.cache.cache_dir`) and mapped from there,
        instead of being read into memory.
    """
    mapped = mapped or stream
    folder = _folder(source, split)
    images, labels = [], []
    width: tuple[int, ...] = ()
    parts = split_parts(folder, split)
    _check_sizes(folder, parts, mapped, stream)
    for part in parts:
        part_images, part_labels = _read_part(part, mapped, width or None, stream)
        width = part_images.shape[1:]
        images.append(part_images)
        labels.append(part_labels)
    all_labels = np.concatenate(labels) if len(labels) > 1 else labels[0]
    if mapped:
        joined = as_images(Shards(images))
    else:
        joined = np.concatenate(images) if len(images) > 1 else images[0]
    name = str(folder if len(parts) == 1 else folder / f"{SPLIT_PREFIX[split]}-*")
    validate_labels(all_labels, n_classes, name)
    if image_shape is not None and width != tuple(image_shape):
        rows, cols = image_shape
        raise DataError(
            f"{folder}: images are {width[0]}x{width[1]} pixels; the network takes {rows}x{cols}"
        )
    if not mapped:
        _check_finite(joined, name)
    files = tuple(path for part in parts for path in (part.images, part.labels))
    return Digits(joined, all_labels.astype(np.int64), str(source), files)


def validate_digits(images: np.ndarray, labels: np.ndarray, n_classes: int, name: str) -> None:
    """Shapes, counts, label range and finiteness of a labelled image set."""
    if images.ndim != 3:
        raise DataError(f"{name}: images must be 3-D (N, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels")
    validate_labels(labels, n_classes, name)
    _check_finite(images, name)


def _check_finite(images: np.ndarray, name: str) -> None:
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        raise DataError(f"{name}: images contain NaN or Inf")


def validate_labels(labels: np.ndarray, n_classes: int, name: str) -> None:
    """A set's labels: not empty, integers, in ``0..n_classes-1``."""
    if labels.shape[0] == 0:
        raise DataError(f"{name}: the dataset is empty")
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise DataError(f"{name}: labels must be integers")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(
            f"{name}: labels must be in 0..{n_classes - 1}, found {labels.min()}..{labels.max()}"
        )


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


def recorded_split(labels: np.ndarray, record: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The (training, held-out) split a run recorded in its model file's ``data`` entry
    (``val_fraction``, ``split_seed``; 0.2 and 0 when not recorded): the one place
    ``train``, ``evaluate`` and ``plot`` make it."""
    record = record or {}
    return stratified_split(labels, record.get("val_fraction", 0.2), record.get("split_seed", 0))


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
