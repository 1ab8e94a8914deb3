"""augment='auto': the same bytes get the same recipe, decided from the data itself."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mlp_xp.checkpoint import load_model
from mlp_xp.cli import main
from mlp_xp.data import known, load_digits, write_idx
from mlp_xp.data.digits import Digits
from mlp_xp.data.embedded import embedded_dir
from mlp_xp.data.known import fingerprint, identify
from mlp_xp.train.autoaugment import MAX_INTERIOR, choose_augment, stroke_interior

from .helpers import idx_folder

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def _copy_of_the_embedded_digits(folder, raw: bool, gz: bool):
    """A folder holding byte-identical copies of the embedded files (raw = gunzip'd)."""
    folder.mkdir()
    for name in (IMAGES, LABELS):
        packed = (embedded_dir() / f"{name}.gz").read_bytes()
        if gz:
            (folder / f"{name}.gz").write_bytes(packed)
        if raw:
            (folder / name).write_bytes(gzip.decompress(packed))
    return folder


def test_the_embedded_digits_get_the_digit_distortions():
    choice = choose_augment("auto", load_digits())
    assert choice.augment == known.DIGIT_AUGMENT == "affine"
    assert choice.requested == "auto" and "handwriting" in choice.reason
    assert choice.dataset == "the embedded MNIST digits"


@pytest.mark.parametrize("raw, gz", [(False, True), (True, False), (True, True)])
def test_the_same_bytes_get_the_same_recipe_however_they_are_delivered(tmp_path, raw, gz):
    embedded = choose_augment("auto", load_digits())
    for mapped in (False, True):
        folder = tmp_path / f"copy-{mapped}"
        copy = load_digits(_copy_of_the_embedded_digits(folder, raw, gz), mapped=mapped)
        assert choose_augment("auto", copy) == embedded


def test_a_published_files_checksum_still_recognises_its_set(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path)
    md5 = known.file_md5(folder / f"{IMAGES}.gz")
    monkeypatch.setattr(known, "KNOWN_FILES", {md5: known.Known("MNIST", "handwriting", "affine")})
    choice = choose_augment("auto", load_digits(folder))
    assert (choice.augment, choice.dataset) == ("affine", "MNIST")
    assert "published checksum" in choice.reason


def test_fashion_mnist_is_known_by_its_pixels_and_gets_no_distortion(monkeypatch):
    digits = load_digits()
    fashion = known.KNOWN_CONTENT["0738d0d0cca4666a9967ce765fdfd75e"]
    monkeypatch.setattr(known, "KNOWN_CONTENT", {fingerprint(digits.images): fashion})
    choice = choose_augment("auto", digits)
    assert (choice.augment, choice.dataset) == ("none", "Fashion-MNIST")
    assert identify(digits).how == "recognised by its pixels"


def test_unknown_handwriting_is_recognised_from_its_images(digits):
    half = Digits(digits.images[1::2].copy(), digits.labels[1::2], "half")  # not the set
    choice = choose_augment("auto", half)
    assert choice.augment == "affine" and choice.dataset is None
    evidence = choice.evidence
    assert evidence["method"] == "measured"
    assert evidence["stroke_interior"] < MAX_INTERIOR < 0.5
    assert evidence["survival"] >= evidence["min_survival"]
    assert evidence["nn_accuracy"] > 0.85  # nearest neighbours on digits


def _filled_shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Solid discs and squares of 5 sizes (10 classes), as objects are: filled, not drawn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    r, c = np.mgrid[0:28, 0:28]
    cy, cx = rng.uniform(12, 16, (2, n))
    size = 5 + (labels % 5)[:, None, None] * 1.5
    dr, dc = np.abs(r - cy[:, None, None]), np.abs(c - cx[:, None, None])
    disc = np.hypot(dr, dc) < size
    square = np.maximum(dr, dc) < size
    shape = np.where((labels < 5)[:, None, None], disc, square)
    return (shape * rng.uniform(120, 255, (n, 1, 1))).astype(np.uint8), labels


def test_filled_shapes_are_not_handwriting():
    images, labels = _filled_shapes(400, 0)
    assert stroke_interior(images.astype(np.float32)) > MAX_INTERIOR
    choice = choose_augment("auto", Digits(images, labels, "shapes"))
    assert choice.augment == "none" and "filled shapes, not pen strokes" in choice.reason
    assert "--augment affine" in choice.line()


def test_images_without_class_structure_get_none(tmp_path):
    choice = choose_augment("auto", load_digits(idx_folder(tmp_path, n=300)))  # random pixels
    assert choice.augment == "none" and "no class structure" in choice.reason


def test_the_decision_does_not_depend_on_the_runs_seed(tmp_path, capsys):
    folder = _copy_of_the_embedded_digits(tmp_path / "d", raw=True, gz=False)
    sub = load_digits(folder)
    half = tmp_path / "half"
    half.mkdir()
    write_idx(half / IMAGES, sub.images[::2])
    write_idx(half / LABELS, sub.labels[::2].astype(np.uint8))
    chosen = set()
    for seed in ("0", "7"):
        args = ["train", "--data", str(half), "--device", "cpu", "--epochs", "1", "--seed", seed]
        assert main([*args, "--out", str(tmp_path / f"{seed}.npz"), "--json", "--quiet"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        chosen.add(json.dumps(result["augment"]["evidence"] | {"seconds": 0}, sort_keys=True))
        meta = load_model(tmp_path / f"{seed}.npz").meta["augmentation"]
        assert meta["augment"] == "affine" and meta["evidence"]["method"] == "measured"
    assert len(chosen) == 1


def test_an_explicit_choice_is_kept(tmp_path):
    assert choose_augment("elastic", load_digits(idx_folder(tmp_path))).augment == "elastic"


def test_the_tables_hold_the_published_checksums_and_the_fingerprints():
    kinds = {k.name: (k.kind, k.augment) for k in known.KNOWN_FILES.values()}
    assert kinds["MNIST"] == kinds["KMNIST"] == ("handwriting", "affine")
    assert kinds["Fashion-MNIST"][1] == "none"
    assert known.KNOWN_CONTENT[fingerprint(load_digits().images)].kind == "handwriting"


def _orientations(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of a bright bar through the middle at one of 10 angles 6 degrees apart
    (class = angle), with jitter and noise: rotating them by up to 12 degrees moves a
    bar up to two classes on, so digit distortions destroy the evidence."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    angle = np.radians(labels * 6.0 + rng.uniform(-1, 1, n))
    r, c = np.mgrid[0:28, 0:28] - 13.5
    dist = np.abs(np.cos(angle)[:, None, None] * r - np.sin(angle)[:, None, None] * c)
    bar = (dist < 1.2) & (np.hypot(r, c) < 12)
    noise = rng.integers(0, 60, (n, 28, 28))
    images = np.clip(bar * 200 + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def test_on_a_non_digit_image_set_the_defaults_do_no_worse_than_none(tmp_path, capsys):
    images, labels = _orientations(600, 0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    scores = {}
    for flag in ("default", "none", "affine"):
        out = tmp_path / f"{flag}.npz"
        extra = [] if flag == "default" else ["--augment", flag]
        args = ["train", "--data", str(tmp_path), "--device", "cpu", "--epochs", "8"]
        assert main([*args, *extra, "--out", str(out), "--json", "--quiet"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        scores[flag] = result["val_accuracy"]
        assert result["augment"]["augment"] == ("none" if flag == "default" else flag)
    assert scores["default"] >= scores["none"]
    assert scores["affine"] < scores["none"]  # what auto protects this data from
    meta = load_model(tmp_path / "default.npz").meta
    assert meta["augmentation"]["requested"] == "auto"
    assert meta["augmentation"]["augment"] == "none"


def test_too_few_images_of_a_class_to_test_a_distortion_get_none(digits):
    keep = np.concatenate([np.flatnonzero(digits.labels == c)[:5] for c in range(10)])
    small = Digits(digits.images[keep], digits.labels[keep], "small")
    choice = choose_augment("auto", small)
    assert choice.augment == "none" and "too few images of each class" in choice.reason


def test_a_raw_file_is_matched_through_the_published_gzipd_copy_beside_it(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path)
    md5 = known.file_md5(folder / f"{IMAGES}.gz")
    monkeypatch.setattr(known, "KNOWN_FILES", {md5: known.Known("KMNIST", "handwriting", "affine")})
    for name in (IMAGES, LABELS):  # gunzip -k: the reader takes the raw file
        (folder / name).write_bytes(gzip.decompress((folder / f"{name}.gz").read_bytes()))
    digits = load_digits(folder)
    assert digits.files[0].name == IMAGES
    assert choose_augment("auto", digits).dataset == "KMNIST"


FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_real_fashion_mnist_is_known_by_its_pixels_and_gets_no_distortion():
    for mapped in (False, True):
        choice = choose_augment("auto", load_digits(FASHION, mapped=mapped))
        assert (choice.augment, choice.dataset) == ("none", "Fashion-MNIST")
        assert choice.evidence == {"method": "recognised by its pixels"}
