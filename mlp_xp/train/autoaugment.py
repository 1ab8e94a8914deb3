"""``augment="auto"``: the augmentation a data set gets, decided from the data itself.

Digit distortions (rotation, scaling, shear, shifts) help a network on handwriting because
a slightly rotated or sheared character keeps its label; on other images they can destroy
the class evidence, and on photographs of objects they cost accuracy (Fashion-MNIST loses
points with them, docs/accuracy.md). So ``auto`` gives a training set the digit
distortions only on evidence that it is handwriting:

1. **Known sets** (:func:`mlp_xp.data.known.identify`): the embedded digits, Fashion-MNIST
   and the published MNIST/KMNIST files, by their pixels' fingerprint or their files'
   checksum, get what their field gives them. The same bytes get the same recipe, however
   they are delivered.
2. **Anything else** is measured, on a fixed sample of its images (the decision depends on
   the bytes alone, never on the run's seed), in well under a second:

   - *strokes*: handwriting is pen strokes on a plain background, so few of its ink
     pixels (above half the image's brightest) are interior, with all 8 neighbours ink:
     18% for MNIST digits, 34% for digits drawn a pixel thicker, against 54% for
     Fashion-MNIST's filled shapes. A set above :data:`MAX_INTERIOR` is not handwriting.
   - *labels that survive the distortion*: each of up to 1,000 held-out images (a fixed
     stratified 20%) is classified by its nearest neighbour among up to 5,000 of the
     others, as it is and after a random digit distortion (three draws). Where labels
     survive, the distorted images keep most of the accuracy (MNIST keeps 0.67-0.82 of it,
     however small the sample); where a distortion turns one class into another it
     collapses (images of bars whose class is their angle keep 0.25-0.33). Below
     :data:`MIN_SURVIVAL`, or with a nearest-neighbour accuracy under twice chance (no
     class structure to test), the set gets none.

The decision and its evidence (the figures above, the thresholds, the time it took) go
into the model file and ``--json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import get_backend
from ..constraints import validate
from ..data.digits import Digits, stratified_split
from ..data.known import DIGIT_AUGMENT, identify
from .augment import Augmenter

__all__ = [
    "AugmentChoice",
    "choose_augment",
    "stroke_interior",
    "label_survival",
    "MAX_INTERIOR",
    "MIN_SURVIVAL",
]

#: Handwriting has at most this share of its ink pixels interior to a stroke.
MAX_INTERIOR = 0.40
#: A distortion keeps labels when nearest-neighbour accuracy keeps at least this share.
MIN_SURVIVAL = 0.55

_SAMPLE_IMAGES, _REFERENCE, _QUERIES, _DRAWS, _CHUNK = 1000, 5000, 1000, 3, 200
#: Images of each class below which there are too few to test a distortion on.
_MIN_A_CLASS = 10


@dataclass(frozen=True)
class AugmentChoice:
    """The augmentation a run uses, what was asked for, why, and on what evidence."""

    augment: str
    requested: str
    dataset: str | None  # the recognised set's name, if any
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"augmentation: {self.augment} ({self.reason})"

    def to_meta(self) -> dict:
        return {
            "augment": self.augment,
            "requested": self.requested,
            "dataset": self.dataset,
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }


def _rows(images, index: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rows ``index`` of ``images`` ((N, H, W), (N, H*W) or Shards) as float32 (n, H, W)."""
    rows = np.asarray(images[np.sort(index)], dtype=np.float32)
    return rows.reshape(len(index), *shape)


def stroke_interior(images: np.ndarray) -> float:
    """Share of ink pixels whose 8 neighbours are all ink, over (n, H, W) images.

    Ink is a pixel above half its image's brightest; a blank image has none.
    """
    peak = images.reshape(len(images), -1).max(axis=1)
    ink = images > 0.5 * np.maximum(peak, 1e-9)[:, None, None]
    ink &= (peak > 0)[:, None, None]
    h, w = images.shape[1:]
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    interior = ink.copy()
    for dr in range(3):
        for dc in range(3):
            interior &= padded[:, dr : dr + h, dc : dc + w]
    return float(interior.sum() / max(int(ink.sum()), 1))


def label_survival(reference, ref_labels, queries, query_labels, augmenter: Augmenter) -> dict:
    """Nearest-neighbour accuracy of ``queries`` among ``reference`` (flat (n, H*W) rows),
    as they are and after ``augmenter``'s random distortions (mean of a few draws)."""
    norms = np.einsum("ij,ij->i", reference, reference)

    def accuracy(q: np.ndarray) -> float:
        hits = 0
        for start in range(0, len(q), _CHUNK):  # bounded temporaries: (chunk, reference)
            part = q[start : start + _CHUNK] @ reference.T
            part *= -2.0
            part += norms[None, :]
            nearest = np.argmin(part, axis=1)
            hits += int(np.sum(ref_labels[nearest] == query_labels[start : start + _CHUNK]))
        return hits / len(q)

    clean = accuracy(queries)
    cpu = get_backend("cpu")
    draws = []
    for seed in range(_DRAWS):
        coefficients = augmenter.draw(np.random.default_rng(seed), len(queries))
        distorted = augmenter(queries.copy(), coefficients.astype(np.float32), cpu)
        draws.append(accuracy(np.array(distorted)))
    distorted_accuracy = float(np.mean(draws))
    return {
        "nn_accuracy": round(clean, 4),
        "nn_accuracy_distorted": round(distorted_accuracy, 4),
        "survival": round(distorted_accuracy / clean, 4) if clean > 0 else 0.0,
    }


def _measure(digits: Digits, shape: tuple[int, int]) -> dict:
    """The evidence about an unknown set: its strokes and whether its labels survive."""
    labels = digits.labels
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    n = len(labels)
    sample = rng.choice(n, min(n, _SAMPLE_IMAGES), replace=False)
    evidence: dict[str, Any] = {
        "stroke_interior": round(stroke_interior(_rows(digits.images, sample, shape)), 4),
        "max_interior": MAX_INTERIOR,
        "images_measured": int(sample.size),
    }
    classes, fewest = np.unique(labels, return_counts=True)
    strokes = evidence["stroke_interior"] <= MAX_INTERIOR
    if strokes and classes.size > 1 and fewest.min() >= _MIN_A_CLASS:  # shapes need no more
        ref, query = stratified_split(labels, 0.2, seed=0)
        ref = np.sort(rng.choice(ref, min(ref.size, _REFERENCE), replace=False))
        query = np.sort(rng.choice(query, min(query.size, _QUERIES), replace=False))
        flat = (len(ref), shape[0] * shape[1])
        evidence.update(
            label_survival(
                _rows(digits.images, ref, shape).reshape(flat) / 255.0,
                labels[ref],
                _rows(digits.images, query, shape).reshape(len(query), -1) / 255.0,
                labels[query],
                Augmenter(DIGIT_AUGMENT, shape),
            ),
            chance=round(1.0 / classes.size, 4),
            min_survival=MIN_SURVIVAL,
            reference_images=int(ref.size),
            held_out_images=int(query.size),
        )
    evidence["seconds"] = round(time.perf_counter() - start, 3)
    return evidence


def _decide(evidence: dict) -> tuple[str, str]:
    """(augmentation, reason) from :func:`_measure`'s evidence."""
    interior = evidence["stroke_interior"]
    off = f"--augment {DIGIT_AUGMENT} turns the digit distortions on"
    if interior > MAX_INTERIOR:
        return "none", (
            f"auto: filled shapes, not pen strokes ({interior:.0%} of ink pixels interior, "
            f"handwriting <= {MAX_INTERIOR:.0%}), so no distortion is assumed to keep their "
            f"labels; {off}"
        )
    if "survival" not in evidence:
        return "none", (
            f"auto: pen strokes ({interior:.0%} of ink interior), but too few images of each "
            f"class (fewer than {_MIN_A_CLASS}) to test a distortion on; {off}"
        )
    if evidence["nn_accuracy"] < 2 * evidence["chance"]:
        return "none", (
            f"auto: pen strokes ({interior:.0%} of ink interior), but the labels show no class "
            f"structure a distortion could be tested against; {off}"
        )
    clean, kept, survival = (
        evidence["nn_accuracy"],
        evidence["nn_accuracy_distorted"],
        evidence["survival"],
    )
    measured = (
        f"nearest-neighbour accuracy {clean:.1%} -> {kept:.1%} under the digit distortions, "
        f"{survival:.2f} kept"
    )
    if survival < MIN_SURVIVAL:
        return "none", (
            f"auto: pen strokes, but the distortions change their labels ({measured}, "
            f"handwriting >= {MIN_SURVIVAL}); {off}"
        )
    return DIGIT_AUGMENT, (
        f"auto: handwriting by its images: pen strokes ({interior:.0%} of ink interior) whose "
        f"labels survive the digit distortions ({measured})"
    )


def choose_augment(
    requested: str, digits: Digits, image_shape: tuple[int, int] = (28, 28)
) -> AugmentChoice:
    """The augmentation for ``requested`` on the training set ``digits`` (``auto``
    decides from the data: see the module's description)."""
    requested = validate("augment", requested)
    if requested != "auto":
        return AugmentChoice(requested, requested, None, "as asked")
    known = identify(digits)
    if known is not None:
        return AugmentChoice(
            known.augment,
            "auto",
            known.name,
            f"auto: {known.name}, {known.kind}, {known.how}",
            {"method": known.how},
        )
    evidence = _measure(digits, image_shape)
    augment, reason = _decide(evidence)
    return AugmentChoice(augment, "auto", None, reason, {"method": "measured", **evidence})
