"""augment='auto': digit distortions only for data known to be handwriting."""

from __future__ import annotations

import json

import numpy as np

from mlp_xp.checkpoint import load_model
from mlp_xp.cli import main
from mlp_xp.data import known, write_idx
from mlp_xp.data.known import choose_augment, identify

from .helpers import idx_folder


def _recognise(monkeypatch, folder, entry):
    """Make ``folder``'s training images count as the set ``entry`` (no download)."""
    md5 = known._md5(folder / "train-images-idx3-ubyte.gz")
    monkeypatch.setattr(known, "KNOWN_SETS", {md5: entry})


def test_the_embedded_digits_get_the_digit_distortions():
    choice = choose_augment("auto", "mnist-5k")
    assert choice.augment == known.DIGIT_AUGMENT == "affine"
    assert choice.requested == "auto" and "handwriting" in choice.reason


def test_a_recognised_handwriting_folder_gets_the_digit_distortions(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path)
    _recognise(monkeypatch, folder, ("MNIST", "handwriting", "affine"))
    choice = choose_augment("auto", folder)
    assert (choice.augment, choice.dataset) == ("affine", "MNIST")


def test_a_recognised_non_handwriting_folder_gets_its_fields_augmentation(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path)
    fashion = known.DATASETS["fashion-mnist"][1][known._IMAGES]
    _recognise(monkeypatch, folder, known.KNOWN_SETS[fashion])
    choice = choose_augment("auto", folder)
    assert (choice.augment, choice.dataset) == ("shift", "Fashion-MNIST")


def test_an_unknown_folder_gets_none_and_says_how_to_turn_it_on(tmp_path):
    folder = idx_folder(tmp_path)
    choice = choose_augment("auto", folder)
    assert choice.augment == "none" and choice.dataset is None
    assert "--augment affine" in choice.line()


def test_an_uncompressed_copy_cannot_be_matched(tmp_path, monkeypatch):
    (tmp_path / "gz").mkdir()
    gz = idx_folder(tmp_path / "gz")
    _recognise(monkeypatch, gz, ("MNIST", "handwriting", "affine"))
    (tmp_path / "raw").mkdir()
    assert identify(gz)[0] == "MNIST"
    assert identify(idx_folder(tmp_path / "raw", gz=False)) is None


def test_an_explicit_choice_is_kept(tmp_path):
    assert choose_augment("elastic", idx_folder(tmp_path)).augment == "elastic"


def test_the_table_holds_the_published_checksums():
    kinds = {name: (kind, aug) for name, kind, aug in known.KNOWN_SETS.values()}
    assert kinds["MNIST"] == kinds["KMNIST"] == ("handwriting", "affine")
    assert kinds["Fashion-MNIST"][1] == "shift"


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
