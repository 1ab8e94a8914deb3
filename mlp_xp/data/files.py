"""Which files of a folder hold a split: the one place every command finds them.

A split (``train`` or ``t10k``) is one or more *parts*; a part is an images file and a
labels file in MNIST's IDX format, each raw or gzip'd:

- ``train-images-idx3-ubyte`` + ``train-labels-idx1-ubyte`` (MNIST, Fashion-MNIST, KMNIST;
  ``train-images.idx3-ubyte``, as some copies spell it, too);
- shards: ``train-00-images-idx3-ubyte`` + ``train-00-labels-idx1-ubyte``, ``train-01-...``.

A file present both raw and gzip'd (what ``gunzip -k`` leaves) is **one** file: the two
are compared as they are read, a block at a time, and the raw one is used (it can be
memory-mapped); if they differ, that is a one-line :class:`~mlp_xp.errors.DataError`
naming both. Two names of one file (a link) are refused too: several shards are several
different files, never one file twice.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = ["Part", "split_parts", "SPLIT_PREFIX"]

#: The file-name prefix of each split.
SPLIT_PREFIX = {"train": "train", "test": "t10k"}

_BLOCK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One shard of a split: its images file and its labels file."""

    images: Path
    labels: Path


def _pattern(prefix: str, what: str, code: str) -> re.Pattern:
    return re.compile(
        rf"^{re.escape(prefix)}(?P<shard>-.+?)?-{what}(?P<sep>[-.]){code}-ubyte(?P<gz>\.gz)?$"
    )


def _same_bytes(raw: Path, gz: Path) -> bool:
    """Whether ``gz`` decompresses to exactly the bytes of ``raw`` (streamed, stops early)."""
    try:
        with open(raw, "rb") as a, gzip.open(gz, "rb") as b:
            while True:
                x, y = a.read(_BLOCK), b.read(_BLOCK)
                if x != y:
                    return False
                if not x:
                    return True
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{gz}: cannot be read to compare with {raw.name} ({exc})") from None


def _one_file(folder: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` in ``folder``; both only when they hold the same bytes."""
    raw, gz = folder / stem, folder / (stem + ".gz")
    have_raw, have_gz = raw.is_file(), gz.is_file()
    if have_raw and have_gz:
        if not _same_bytes(raw, gz):
            raise DataError(
                f"{raw} and {gz} hold different data; keep the one you mean (a file given "
                "raw and gzip'd is read once, so the two must agree)"
            )
        return raw
    if have_raw or have_gz:
        return raw if have_raw else gz
    raise DataError(f"{folder}: no {stem} or {stem}.gz beside the images")


def _stems(folder: Path, pattern: re.Pattern) -> dict[str, re.Match]:
    """The matching names in ``folder``, without ``.gz``, each once."""
    found: dict[str, re.Match] = {}
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match and path.is_file():
            found.setdefault(path.name.removesuffix(".gz"), match)
    return dict(sorted(found.items()))


def split_parts(folder: Path, split: str) -> list[Part]:
    """The parts of ``split`` in ``folder``, shards in name order, each file once."""
    prefix = SPLIT_PREFIX[split]
    images = _stems(folder, _pattern(prefix, "images", "idx3"))
    if not images:
        raise DataError(
            f"{folder}: no {prefix}-images-idx3-ubyte or {prefix}-images-idx3-ubyte.gz "
            "(expected MNIST-format IDX files)"
        )
    whole = [stem for stem, match in images.items() if not match.group("shard")]
    if whole and len(images) > len(whole):
        shard = next(stem for stem, match in images.items() if match.group("shard"))
        raise DataError(
            f"{folder}: holds both {whole[0]} and shards such as {shard}; a split is one "
            "or the other (move one away)"
        )
    parts: list[Part] = []
    seen: dict[tuple[int, int], Path] = {}
    for stem, match in images.items():
        shard, sep = match.group("shard") or "", match.group("sep")
        part = Part(
            _one_file(folder, stem), _one_file(folder, f"{prefix}{shard}-labels{sep}idx1-ubyte")
        )
        for path in (part.images, part.labels):
            status = os.stat(path)
            key = (status.st_dev, status.st_ino)
            if key in seen:
                raise DataError(f"{path} and {seen[key]} are one file: a split reads it once")
            seen[key] = path
        parts.append(part)
    _refuse_orphans(folder, prefix, parts)
    return parts


def _refuse_orphans(folder: Path, prefix: str, parts: list[Part]) -> None:
    """Labels files of the split that no images file pairs with are a one-line error."""
    paired = {part.labels.name.removesuffix(".gz") for part in parts}
    for stem in _stems(folder, _pattern(prefix, "labels", "idx1")):
        if stem not in paired:
            raise DataError(f"{folder / stem}: labels with no images beside them")
