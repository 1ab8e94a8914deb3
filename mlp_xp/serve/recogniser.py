"""One model, read once, and what ``predict`` answers for a request's images.

Uploaded image files go through the same conversion as ``predict``'s photos
(:func:`mlp_xp.data.images.load_digit_image`: its decoding limits, crop, scale to 20x20,
centre of mass, MNIST's polarity), JSON pixels through the same checks as its arrays
(:func:`mlp_xp.data.pixel_range`, :func:`mlp_xp.data.blank_images`), and each answer is
:func:`mlp_xp.data.predictions.prediction`, so the fields are those of ``predict --json``.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np

from ..backends import get_backend
from ..checkpoint import load_model
from ..data import Normalization, blank_images, pixel_range
from ..data.plausible import weigh
from ..data.predictions import prediction, weighs_digits
from ..errors import DataError, ModelFileError, NoDigitError

__all__ = ["Recogniser", "MAX_IMAGES"]

#: The most images one JSON request may hold.
MAX_IMAGES = 256


class Recogniser:
    """A digit classifier loaded from ``path`` onto ``device`` (the safe model reader)."""

    def __init__(self, path, device=None):
        self.backend = get_backend(device)
        self.model = load_model(path, self.backend)
        if self.model.task != "classify" or self.model.n_inputs != 784:
            raise ModelFileError(
                f"{path}: serve needs a 784-input digit classifier (task 'classify')"
            )
        self.normalization = Normalization.from_meta(self.model.meta.get("normalization"))
        self.digits = weighs_digits(self.model.meta)  # inputs weighed: is it a digit at all?
        self.summary = _summary(Path(path).name, self.model, self.backend)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) fractions in [0, 1] -> (N, 10) float64 probabilities: one forward
        pass."""
        X = self.backend.put(self.normalization.apply(images, self.model.dtype))
        return self.backend.get(self.model.predict_proba(X)).astype(np.float64)

    def answers(self, images, probs, labels: list[str], source=None) -> list[dict]:
        """``predict --json``'s objects, one per image: no guess for a blank image or one
        that is not plausibly a digit (``source``: what the photo's crop measured)."""
        if probs is None:
            return [prediction(label, None, {}, self.digits) for label in labels]
        blank = blank_images(images)
        evidence = weigh(images, source)
        return [
            prediction(label, None if blank[i] else probs[i], evidence[i], self.digits)
            for i, label in enumerate(labels)
        ]


def decode_upload(data: bytes, name: str) -> tuple[np.ndarray, dict] | None:
    """An uploaded image file -> the (28, 28) uint8 image the network sees and what its
    crop to the ink measured, or None when it holds no digit (blank). Anything Pillow
    cannot decode is a :class:`DataError`."""
    from ..data.images import load_digit_image

    info: dict = {}
    try:
        return load_digit_image(io.BytesIO(data), info, name), info
    except NoDigitError:
        return None
    except DataError as exc:  # Pillow names the in-memory file object: name the upload
        raise DataError(re.sub(r"<_io\.BytesIO object at \w+>", "the upload", str(exc))) from None
    except Exception as exc:  # a decoder's own failure on hostile bytes
        raise DataError(f"{name}: not an image Pillow can read ({type(exc).__name__})") from None


def pixels_from_json(value) -> np.ndarray:
    """The ``pixels`` of a JSON request: one 28x28 image (or 784 values), or a list of
    them -> (N, 28, 28) fractions of full brightness, checked like ``predict``'s arrays
    (0-255 values, or fractions in [0, 1])."""
    if not isinstance(value, list) or not value:
        raise DataError("'pixels' must be a 28x28 list of numbers, or a list of them")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, RecursionError):
        raise DataError("'pixels' is ragged: every image must be 28x28 numbers") from None
    if arr.dtype.kind not in "biuf":
        raise DataError("'pixels' must hold numbers (0-255, or fractions in [0, 1])")
    if arr.shape in ((28, 28), (784,)):
        arr = arr[None]
    if arr.ndim == 2 and arr.shape[1] == 784:
        arr = arr.reshape(-1, 28, 28)
    if arr.ndim != 3 or arr.shape[1:] != (28, 28):
        raise DataError(f"'pixels' must be 28x28 images, got shape {list(arr.shape)}")
    if len(arr) > MAX_IMAGES:
        raise DataError(f"at most {MAX_IMAGES} images a request, got {len(arr)}")
    full, _ = pixel_range(arr, "pixels")
    return arr.astype(np.float64) / full


def _summary(name: str, model, backend) -> dict:
    """What ``GET /model`` and the page show: layers, accuracy recorded, device, calibration."""
    meta = model.meta
    history = (meta.get("training") or {}).get("history") or {}
    accuracy = None
    best, val = history.get("best_epoch"), history.get("val_accuracy") or []
    if isinstance(best, int) and 0 < best <= len(val) and isinstance(val[best - 1], float):
        accuracy = val[best - 1] if math.isfinite(val[best - 1]) else None
    calibration = meta.get("calibration") or {}
    return {
        "file": name,
        "network": "-".join(str(n) for n in model.layer_sizes),
        "layers": model.layer_sizes,
        "activations": list(model.config()["activations"]),
        "task": model.task,
        "dtype": model.dtype,
        "parameters": int(model.n_params),
        "val_accuracy": accuracy,
        "trained_on": (meta.get("data") or {}).get("source"),
        "trained_device": (meta.get("training") or {}).get("device"),
        "backend": backend.name,
        "device": backend.device,
        "temperature": model.temperature,
        "calibration": {
            k: calibration[k] for k in ("fitted_on", "ece_before", "ece_after") if k in calibration
        }
        or None,
    }
