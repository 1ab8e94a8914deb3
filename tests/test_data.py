"""IDX files, the embedded digits, splits and scaling."""

import gzip

import numpy as np
import pytest

from mlp_xp.data import (
    load_digits,
    parse_idx,
    read_idx,
    scale_images,
    stratified_folds,
    stratified_split,
    write_idx,
)
from mlp_xp.errors import DataError

from .helpers import idx_folder


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, dtype, name, rng):
    arr = (rng.random((4, 3, 2)) * 100).astype(dtype)
    write_idx(tmp_path / name, arr)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels", arr, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), arr)


def test_embedded_digits_are_the_documented_5000(digits):
    assert digits.images.shape == (5000, 28, 28) and digits.images.dtype == np.uint8
    assert np.bincount(digits.labels).tolist() == [500] * 10
    assert digits.images.max() == 255 and digits.images.min() == 0


def test_folder_of_idx_files_loads_both_splits(tmp_path):
    folder = idx_folder(tmp_path, n=30, gz=False, test=True)
    train = load_digits(folder, "train")
    test = load_digits(folder, "test")
    assert len(train) == 30 and len(test) == 20


def test_stratified_split_is_deterministic_and_balanced(digits):
    a = stratified_split(digits.labels, 0.2, seed=0)
    b = stratified_split(digits.labels, 0.2, seed=0)
    c = stratified_split(digits.labels, 0.2, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    train, val = a
    assert len(val) == 1000 and len(np.intersect1d(train, val)) == 0
    assert np.bincount(digits.labels[val]).tolist() == [100] * 10


def test_stratified_folds_partition_the_data(digits):
    folds = stratified_folds(digits.labels, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(5000))
    assert all(np.bincount(digits.labels[f]).tolist() == [100] * 10 for f in folds)


def test_scaling_to_unit_range():
    imgs = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    np.testing.assert_allclose(scale_images(imgs), [[0, 1, 0.2, 0.4]], rtol=1e-6)
    assert scale_images(imgs).dtype == np.float32
    with pytest.warns(UserWarning, match="read as 0-255 values"):
        np.testing.assert_allclose(scale_images(imgs.astype(np.float64)), [[0, 1, 0.2, 0.4]])
    with pytest.raises(DataError, match="NaN"):
        scale_images(np.array([[[np.nan]]]))


def _header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"", "not an IDX file"),
        (b"\x00\x00\x08", "not an IDX file"),
        (b"\x01\x02\x08\x01" + bytes(8), "bad IDX magic number"),
        (b"\x00\x00\x07\x01" + bytes(8), "bad IDX magic number"),
        (_header(8, [10])[:6], "truncated IDX header"),
        (_header(8, [10]) + bytes(5), "truncated"),
        (_header(8, [3]) + bytes(5), "bytes past the end"),
        (_header(8, [2**31, 28, 28]), r"needs 1,683,627,180,032 data bytes, file has 0"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (_header(12, [0, 1734, 1479344, 898900181]), "larger than any array can be"),
    ],
)
def test_malformed_idx_bytes_give_data_errors(raw, match):
    with pytest.raises(DataError, match=match):
        parse_idx(raw)


def test_file_level_idx_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "missing")
    (tmp_path / "fake.gz").write_bytes(_header(8, [1]) + b"\x01")
    with pytest.raises(DataError, match="not a gzip file"):
        read_idx(tmp_path / "fake.gz")
    good = gzip.compress(_header(8, [100]) + bytes(100))
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(DataError, match="is a folder"):
        read_idx(tmp_path)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda im, lb: (im, lb[:-1]), "images but"),
        (lambda im, lb: (im, lb + 5), r"labels must be in 0\.\.9"),
        (lambda im, lb: (im[:, 0], lb), "must be 3-D"),
        (lambda im, lb: (im[:0], lb[:0]), "empty"),
        (lambda im, lb: (im.astype(np.float32) * np.nan, lb), "NaN or Inf"),
    ],
)
def test_inconsistent_datasets_are_refused(tmp_path, mutate, match):
    r = np.random.default_rng(0)
    images, labels = mutate(
        r.integers(0, 255, (10, 28, 28)).astype(np.uint8), (np.arange(10) % 10).astype(np.uint8)
    )
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=match):
        load_digits(tmp_path)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_digits(tmp_path / "nope")
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_digits(tmp_path)
    with pytest.raises(DataError, match="no test split"):
        load_digits("mnist-5k", "test")
