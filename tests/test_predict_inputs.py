"""What ``predict`` makes of its inputs: the two pixel conventions, the assumption it
names, the values it refuses, and blank images (no digit found, never a guess)."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from mlp_xp import MLP, fit, save_model
from mlp_xp.cli import main
from mlp_xp.data import DIGITS, blank_images, pixel_range, scale_images
from mlp_xp.errors import DataError


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, digits):
    model = MLP(784, (32,), 10, backend="cpu", seed=0)
    fit(model, scale_images(digits.images[::4]), digits.labels[::4], epochs=2, augment="none")
    return save_model(tmp_path_factory.mktemp("m") / "model.npz", model)


def predict(model_file, capsys, *inputs):
    code = main(["predict", str(model_file), *map(str, inputs), "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else None), err


def test_uint8_looking_floats_are_read_as_0_255_and_the_assumption_is_named(
    tmp_path, digits, model_file, capsys
):
    images = digits.images[[0, 600, 1200]]
    np.save(tmp_path / "u8.npy", images)
    np.save(tmp_path / "f255.npy", images.astype(np.float32))
    np.save(tmp_path / "unit.npy", images.astype(np.float64) / 255)
    code, as_uint8, err = predict(model_file, capsys, tmp_path / "u8.npy")
    assert code == 0 and err == ""
    code, as_float, err = predict(model_file, capsys, tmp_path / "f255.npy")
    assert code == 0
    assert err.strip() == (
        f"mlp-xp: warning: {tmp_path / 'f255.npy'}: float pixels go up to 255, so they were "
        "read as 0-255 values (not as fractions of full brightness in [0, 1])"
    )
    code, as_unit, err = predict(model_file, capsys, tmp_path / "unit.npy")
    assert code == 0 and err == ""  # fractions in [0, 1]: the documented convention
    for a, b, c in zip(as_uint8, as_float, as_unit, strict=True):
        assert a["digit"] == b["digit"] == c["digit"]
        assert a["probability"] == pytest.approx(b["probability"], rel=1e-5)
        assert a["probability"] == pytest.approx(c["probability"], rel=1e-5)


@pytest.mark.parametrize(
    "values, dtype, match",
    [
        ([-0.5, 0.7], np.float32, "range from -0.5 to 0.7; expected fractions in [0, 1] or 0-255"),
        ([0.0, 300.0], np.float64, "range from 0 to 300; expected fractions in [0, 1] or 0-255"),
        ([0, 1000], np.int16, "range from 0 to 1000; expected 0-255 values"),
        ([-1, 3], np.int8, "range from -1 to 3; expected 0-255 values"),
    ],
)
def test_pixels_outside_both_conventions_are_refused_in_one_line(
    tmp_path, model_file, capsys, values, dtype, match
):
    images = np.zeros((2, 28, 28), dtype)
    images[0, 10:18, 12:16] = values[0]
    images[1, 10:18, 12:16] = values[1]
    np.save(tmp_path / "odd.npy", images)
    code, _, err = predict(model_file, capsys, tmp_path / "odd.npy")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'odd.npy'}: pixel values {match}" in err


def test_blank_inputs_are_no_digit_found_not_a_confident_guess(
    tmp_path, digits, model_file, capsys
):
    batch = np.zeros((5, 28, 28), np.uint8)
    batch[1] = 255  # all bright
    batch[2] = 7  # a faint uniform grey
    batch[3] = digits.images[600]  # a real digit among them
    batch[4, 3, 3] = 8  # one speck below the contrast threshold
    np.save(tmp_path / "batch.npy", batch)
    np.save(tmp_path / "zeros.npy", np.zeros((28, 28), np.float32))
    Image.new("L", (60, 60), 255).save(tmp_path / "blank.png")
    code, results, _ = predict(
        model_file, capsys, tmp_path / "batch.npy", tmp_path / "zeros.npy", tmp_path / "blank.png"
    )
    assert code == 0
    blank = [r for r in results if r["digit"] is None]
    assert [r["input"].rsplit("/", 1)[-1] for r in blank] == [
        "batch.npy[0]",
        "batch.npy[1]",
        "batch.npy[2]",
        "batch.npy[4]",
        "zeros.npy",
        "blank.png",
    ]
    for r in blank:
        assert r["probability"] is None and r["top3"] == []
        assert r["note"] == "no digit found (the image is blank)"
    assert results[3]["digit"] == digits.labels[600]
    code = main(["predict", str(model_file), str(tmp_path / "zeros.npy"), "--device", "cpu"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("zeros.npy: no digit found (the image is blank)")


def test_pixel_range_and_blank_images_in_the_api():
    assert pixel_range(np.array([0, 255], np.uint8)) == (255.0, "")
    assert pixel_range(np.array([0.0, 1.0])) == (1.0, "")
    assert pixel_range(np.array([True, False])) == (1.0, "")
    full, note = pixel_range(np.array([0.0, 2.0]), "x")
    assert full == 255.0 and note.startswith("x: float pixels go up to 2")
    with pytest.raises(DataError, match="NaN or Inf"):
        pixel_range(np.array([np.nan]))
    bools = np.zeros((2, 784), bool)
    bools[1, :10] = True
    assert blank_images(bools).tolist() == [True, False]
    assert blank_images(np.zeros((28, 28), np.uint8)).tolist() == [True]  # one image
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # booleans are ink or not: nothing assumed
        np.testing.assert_array_equal(DIGITS.apply(bools)[1, :10], np.ones(10, np.float32))
