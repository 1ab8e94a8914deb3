"""One reader: every command finds a folder's files the same way, and reads each file once."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest

from mlp_xp.cli import main
from mlp_xp.data import load_digits, stratified_split, write_idx
from mlp_xp.data.embedded import embedded_dir
from mlp_xp.errors import DataError

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def _subset(folder, digits, n=200, raw=True, gz=True):
    """``n`` of the embedded digits (20 a class) written raw, gzip'd, or both."""
    keep = np.concatenate([np.flatnonzero(digits.labels == c)[: n // 10] for c in range(10)])
    images, labels = digits.images[keep], digits.labels[keep].astype(np.uint8)
    folder.mkdir(exist_ok=True)
    for suffix, wanted in (("", raw), (".gz", gz)):
        if wanted:
            write_idx(folder / (IMAGES + suffix), images)
            write_idx(folder / (LABELS + suffix), labels)
    return folder


def test_a_file_present_raw_and_gzipd_is_read_once(tmp_path, digits):
    folder = _subset(tmp_path / "both", digits)
    for mapped in (False, True):
        both = load_digits(folder, mapped=mapped)
        assert len(both) == 200
        assert [p.name for p in both.files] == [IMAGES, LABELS]  # the raw ones: mappable
    only_gz = load_digits(_subset(tmp_path / "gz", digits, raw=False))
    np.testing.assert_array_equal(load_digits(folder).images, only_gz.images)


def test_train_and_evaluate_see_one_copy_and_no_held_out_digit_is_in_training(
    tmp_path, digits, capsys
):
    folder = _subset(tmp_path / "both", digits)
    out = tmp_path / "m.npz"
    args = ["train", "--data", str(folder), "--device", "cpu", "--epochs", "1"]
    assert main([*args, "--augment", "none", "--out", str(out)]) == 0
    assert "160 training / 40 held-out digits" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--data", str(folder), "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"] == 40
    read = load_digits(folder, mapped=True)
    train_idx, val_idx = stratified_split(read.labels, 0.2, 0)
    rows = np.asarray(read.images[np.arange(len(read))])
    seen = {rows[i].tobytes() for i in train_idx}
    assert not any(rows[i].tobytes() in seen for i in val_idx)


def test_a_raw_and_a_gzipd_file_that_differ_are_one_line_naming_both(tmp_path, digits, capsys):
    folder = _subset(tmp_path / "both", digits)
    other = np.asarray(load_digits(folder).images)[::-1].copy()
    write_idx(folder / (IMAGES + ".gz"), other)
    with pytest.raises(DataError, match=f"{IMAGES} and .*{IMAGES}.gz hold different data"):
        load_digits(folder)
    assert main(["train", "--data", str(folder), "--device", "cpu", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hold different data" in err[0]


def test_shards_raw_and_gzipd_are_joined_in_name_order_whatever_the_reader(tmp_path, digits):
    whole = load_digits()
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, (lo, hi) in enumerate([(0, 1500), (1500, 3000), (3000, 5000)]):
        suffix = ".gz" if i == 1 else ""
        write_idx(folder / f"train-{i:02d}-images-idx3-ubyte{suffix}", whole.images[lo:hi])
        write_idx(
            folder / f"train-{i:02d}-labels-idx1-ubyte{suffix}",
            whole.labels[lo:hi].astype(np.uint8),
        )
    shutil.copy(folder / "train-02-labels-idx1-ubyte", folder / "train-02-labels-idx1-ubyte.bak")
    loaded, mapped = load_digits(folder), load_digits(folder, mapped=True)
    np.testing.assert_array_equal(loaded.labels, whole.labels)
    np.testing.assert_array_equal(mapped.labels, whole.labels)
    np.testing.assert_array_equal(loaded.images, whole.images)
    np.testing.assert_array_equal(mapped.images[np.arange(5000)], whole.images.reshape(5000, -1))


def test_one_file_under_two_names_is_refused(tmp_path, digits):
    folder = _subset(tmp_path / "d", digits, gz=False)
    for name in (IMAGES, LABELS):
        (folder / name).rename(folder / name.replace("train-", "train-00-"))
        os.link(
            folder / name.replace("train-", "train-00-"),
            folder / name.replace("train-", "train-01-"),
        )
    with pytest.raises(DataError, match="are one file"):
        load_digits(folder)


def test_the_dotted_names_of_some_copies_are_read(tmp_path, digits):
    folder = tmp_path / "dotted"
    folder.mkdir()
    source = embedded_dir()
    for name in (IMAGES, LABELS):
        with gzip.open(source / f"{name}.gz") as fh:
            (folder / name.replace("-idx", ".idx")).write_bytes(fh.read())
    assert len(load_digits(folder)) == 5000


def test_labels_missing_beside_the_images_are_named(tmp_path, digits):
    folder = _subset(tmp_path / "d", digits, gz=False)
    (folder / LABELS).unlink()
    with pytest.raises(DataError, match=f"no {LABELS} or {LABELS}.gz beside the images"):
        load_digits(folder)


def test_a_whole_file_beside_shards_is_refused(tmp_path, digits):
    folder = _subset(tmp_path / "d", digits, gz=False)
    shutil.copy(folder / IMAGES, folder / IMAGES.replace("train-", "train-00-"))
    shutil.copy(folder / LABELS, folder / LABELS.replace("train-", "train-00-"))
    with pytest.raises(DataError, match="holds both train-images-idx3-ubyte and shards"):
        load_digits(folder)


def test_labels_without_images_are_refused(tmp_path, digits):
    folder = _subset(tmp_path / "d", digits, gz=False)
    shutil.copy(folder / LABELS, folder / LABELS.replace("train-", "train-01-"))
    with pytest.raises(DataError, match="train-01-labels-idx1-ubyte: labels with no images"):
        load_digits(folder)


@pytest.mark.parametrize(
    "command, expected",
    [
        (["perceptron", "--digits", "3,5", "--json"], '"data": "40 digits'),
        (["bench", "--devices", "cpu", "--batch-sizes", "64", "--json"], "(200 digits)"),
        (["train", "--device", "cpu", "--epochs", "1", "--stream"], "160 training / 40 held-out"),
    ],
    ids=["perceptron", "bench", "stream"],
)
def test_every_command_reads_a_raw_and_gzipd_folder_once(
    tmp_path, digits, capsys, command, expected
):
    folder = _subset(tmp_path / "both", digits)
    args = [command[0], "--data", str(folder), *command[1:]]
    if command[0] == "train":
        args += ["--out", str(tmp_path / "m.npz")]
    assert main(args) == 0
    assert expected in capsys.readouterr().out
