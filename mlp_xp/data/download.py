"""Download MNIST, Fashion-MNIST or KMNIST (standard library only).

Files are fetched from the datasets' published mirrors, resumed from a
``.part`` file when one is left over, verified against the published MD5 sums,
and only then renamed into place. Without network it fails with one clear
:class:`~mlp_xp.errors.DataError`. The result is a folder ``--data`` accepts.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..fileio import replace, write_target

__all__ = ["DATASETS", "download", "file_md5"]

_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: name -> (mirrors, {file: md5}); the checksums are the datasets' published ones.
DATASETS: dict[str, tuple[list[str], dict[str, str]]] = {
    "mnist": (
        ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        dict(
            zip(
                _FILES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                strict=True,
            )
        ),
    ),
    "fashion-mnist": (
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        dict(
            zip(
                _FILES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                strict=True,
            )
        ),
    ),
    "kmnist": (
        ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        dict(
            zip(
                _FILES,
                (
                    "bdb82020997e1d708af4cf47b453dcf7",
                    "e144d726b3acfaa3e44228e80efcd344",
                    "5c965bf0a639b31b8f53240b1b52f4d7",
                    "7320c461ea6c1c855c0b718fb2a4b134",
                ),
                strict=True,
            )
        ),
    ),
}

_CHUNK = 1 << 16


def file_md5(path: Path) -> str:
    """md5 of a file's bytes, read in blocks (the checksums datasets publish)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part``, resuming from its current size."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mlp-xp"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already complete
            return
        raise
    with response:
        resumed = have and getattr(response, "status", 200) == 206
        with open(part, "ab" if resumed else "wb") as fh:
            for block in iter(lambda: response.read(_CHUNK), b""):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())


def download(name: str, folder, timeout: float = 30.0, log=print) -> Path:
    """Fetch the four IDX files of dataset ``name`` into ``folder``; return the folder."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    mirrors, files = DATASETS[name]
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the folder ({exc.strerror})") from None
    for filename, md5 in files.items():
        target = write_target(folder / filename)  # a link's target; a device is refused
        if target.exists() and file_md5(target) == md5:
            log(f"{filename}: already present, checksum ok")
            continue
        part = target.parent / (target.name + ".part")
        errors = []
        for mirror in mirrors:
            try:
                _fetch(mirror + filename, part, timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                errors.append(f"{mirror}: {reason}")
                continue
            if file_md5(part) == md5:
                replace(part, target)
                log(f"{filename}: downloaded, checksum ok")
                break
            part.unlink()
            errors.append(f"{mirror}: checksum mismatch")
        else:
            raise DataError(
                f"could not download {name} {filename} (offline?): " + "; ".join(errors)
            )
    return folder
