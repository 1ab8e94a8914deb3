"""Files whose headers declare more than they hold, or more than memory: refused from the
headers, before the payload is decompressed (every hostile file here is built small)."""

from __future__ import annotations

import gzip
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest

from mlp_xp import budget
from mlp_xp.cli import main
from mlp_xp.data import load_digits, read_idx, write_idx
from mlp_xp.data.idx import DEFLATE_MAX_RATIO, idx_header
from mlp_xp.errors import DataError, MemoryBudgetError

from .helpers import idx_folder

TEN_MILLION = 10_000_000


def _header(n: int) -> bytes:
    return bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))


def _zeros_gz(path, n: int, declared: int | None = None) -> None:
    """A gzip'd IDX images file really holding ``n`` blank images (a bomb, scaled down:
    zeros compress about 1000:1), whose header declares ``declared`` of them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    data = packer.compress(_header(declared or n))
    block = bytes(784 * 1000)
    for _ in range(n // 1000):
        data += packer.compress(block)
    path.write_bytes(data + packer.flush())


def _peak(fn):
    """``fn()``'s exception and the peak of memory allocated while it ran (traced)."""
    tracemalloc.start()
    try:
        with pytest.raises((DataError, MemoryBudgetError)) as info:
            fn()
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_header_declaring_more_than_deflate_can_hold_is_refused_unread(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_header(TEN_MILLION) + bytes(784 * 3)))
    for read in (read_idx, idx_header):
        with pytest.raises(DataError, match=f"holds at most .* {DEFLATE_MAX_RATIO}:1"):
            read(path)


def test_a_bomb_whose_labels_disagree_is_refused_from_the_headers(tmp_path):
    """The issue's 7.6 MB file of 10 million images, at 1/500 of its size: 20,000 blank
    images beside 60 labels. Before, all 15.7 MB were decompressed (and copied) first."""
    _zeros_gz(tmp_path / "train-images-idx3-ubyte.gz", 20_000)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(60, dtype=np.uint8) % 10)
    error, peak = _peak(lambda: load_digits(tmp_path))
    assert "20,000 images but labels of shape (60,)" in str(error)
    assert peak < 2_000_000, peak


def test_data_larger_than_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    _zeros_gz(tmp_path / "train-images-idx3-ubyte.gz", 20_000)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(20_000, dtype=np.uint8) % 10)
    monkeypatch.setattr(budget, "host_available", lambda: (5_000_000, "of host memory available"))
    error, peak = _peak(lambda: load_digits(tmp_path))
    assert isinstance(error, MemoryBudgetError)
    assert "need 15.9 MB of memory, but 5.0 MB is of host memory available" in str(error)
    assert "train --stream" in str(error)
    assert peak < 2_000_000, peak


def test_stream_maps_a_gzipd_set_from_one_decompressed_copy_in_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLP_XP_CACHE", str(cache))
    (tmp_path / "data").mkdir()
    folder = idx_folder(tmp_path / "data", n=60)
    digits = load_digits(folder, stream=True)
    (copy,) = cache.iterdir()
    assert all(isinstance(part, np.memmap) for part in digits.images.parts)
    assert {str(part.filename) for part in digits.images.parts} == {str(copy)}
    np.testing.assert_array_equal(
        digits.images[:], read_idx(folder / "train-images-idx3-ubyte.gz").reshape(60, 784)
    )
    made = copy.stat().st_mtime_ns
    load_digits(folder, stream=True)  # the copy is made once
    assert list(cache.iterdir()) == [copy] and copy.stat().st_mtime_ns == made
    assert not list(folder.glob("*-ubyte")), "nothing is written beside the user's data"


def test_stream_of_a_gzipd_set_says_where_its_copy_is(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLP_XP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    folder = idx_folder(tmp_path / "data", n=60)
    argv = ["train", "--data", folder, "--stream", "--epochs", "1", "--hidden", "8"]
    code = main([*map(str, argv), "--augment", "none", "--out", str(tmp_path / "m.npz")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"decompressed once to {tmp_path / 'cache'} and memory-mapped from there" in out
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_an_image_too_large_for_a_digit_is_refused_from_its_header(tmp_path, capsys):
    """Before, a 10000x10000 PNG passed Pillow's bomb warning through and was decoded
    (3.2 GB); its header alone now refuses it, in one line."""
    Image = pytest.importorskip("PIL.Image")
    from mlp_xp import MLP, save_model
    from mlp_xp.data.images import load_digit_image

    path = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000), 1).save(path)  # 12.5 MB to make, a few kB on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning passes through
        with pytest.raises(DataError, match="10000x10000 pixels .100.0 megapixels. is more"):
            load_digit_image(path)
    save_model(tmp_path / "m.npz", MLP(784, (8,), 10, backend="cpu"))
    code = main(["predict", str(tmp_path / "m.npz"), str(path), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "(at most 67.1 megapixels); scale it down" in err[0]
    assert err[0].startswith(f"mlp-xp predict: error: {path}: 10000x10000 pixels"), err
