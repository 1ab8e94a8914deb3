"""Is it a digit at all? The evidence ``predict`` weighs before it names one.

A network trained on digits names a digit for anything: one dark dot on white paper,
scaled into a solid square, was an "8" at 99.9%. So each input (a 28x28 image in MNIST's
convention, ink bright) is measured first:

``ink``    the share of the 28x28 field at half brightness or more;
``solid``  the share of those ink pixels whose eight neighbours are all ink: strokes have
           edges, a filled blob does not;
``coherence``  the correlation of neighbouring pixels inside the box of lit pixels (over
           a tenth of full brightness): strokes are smooth, noise and scattered dots are
           not;
``span``   the ink's longer side in pixels.

``span`` and ``coherence`` are measured on the input itself: for an image file, on the
photo's crop to the ink before it was scaled to fit 20x20 (a dot of 1 pixel or a 3x3
blob is not enough to draw a digit with; and scaling would smear noise into blobs), its
coherence after averaging disjoint blocks down to at most 56 pixels a side, which keeps
independent pixels independent; for an array, on its 28x28 field.

An input is "not a digit" when one of them lies outside :data:`BOUNDS` (``predict`` asks
only for models of digit sets: a Fashion-MNIST model's inputs are weighed, not refused).
The bounds are not chosen by hand: :func:`calibrate` derives them from the embedded
MNIST digits -- the lower bounds are half the smallest value any of them has, the upper
bounds 1.2 times the largest -- so that no embedded digit is refused and a margin is left
for handwriting a little thinner, bolder or rougher than MNIST's.
``scripts/calibrate_digit_check.py`` prints them; ``tests/test_plausible.py`` recomputes
them and checks the refusals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .pixels import pixel_range

__all__ = ["Bounds", "BOUNDS", "evidence", "measure_crop", "weigh", "verdict", "calibrate", "spans"]

_INK, _LIT = 0.5, 0.1


@dataclass(frozen=True)
class Bounds:
    """What a digit's evidence may be (see the module's docstring)."""

    ink_min: float
    ink_max: float
    solid_max: float
    coherence_min: float
    span_min: float

    def to_dict(self) -> dict:
        return asdict(self)


#: :func:`calibrate` of the embedded digits (``mnist-5k``), rounded to 3 decimals.
BOUNDS = Bounds(ink_min=0.015, ink_max=0.367, solid_max=0.784, coherence_min=0.185, span_min=7.0)


def spans(field: np.ndarray) -> np.ndarray:
    """The longer side of each image's ink box (0 for an image without ink), (N,) ints."""
    ink: np.ndarray = np.asarray(np.asarray(field) >= _INK)
    out = np.zeros(ink.shape[0], dtype=np.int64)
    for axis in (1, 2):
        lines = np.asarray(ink.any(axis=3 - axis))  # rows (axis 1) or columns holding ink
        first = np.argmax(lines, axis=1)
        last = lines.shape[1] - 1 - np.argmax(lines[:, ::-1], axis=1)
        out = np.maximum(out, np.where(lines.any(axis=1), last - first + 1, 0))
    return out


def _features(field: np.ndarray) -> dict[str, np.ndarray]:
    """``ink``, ``solid`` and ``coherence`` of (N, 28, 28) images in [0, 1]."""
    ink = field >= _INK
    count = ink.sum(axis=(1, 2))
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    interior = np.ones_like(ink)
    h, w = ink.shape[1:]
    for dy in range(3):
        for dx in range(3):
            interior &= padded[:, dy : dy + h, dx : dx + w]
    return {
        "ink": count / (h * w),
        "solid": interior.sum(axis=(1, 2)) / np.maximum(count, 1),
        "coherence": _coherence(field),
    }


def _box(lit: np.ndarray) -> np.ndarray:
    """The bounding box of each image's ``lit`` pixels, as a mask."""

    def extent(lines: np.ndarray) -> np.ndarray:
        first = np.argmax(lines, axis=1)[:, None]
        last = lines.shape[1] - 1 - np.argmax(lines[:, ::-1], axis=1)[:, None]
        at = np.arange(lines.shape[1])[None, :]
        return (at >= first) & (at <= last) & lines.any(axis=1, keepdims=True)

    rows, cols = np.asarray(lit.any(axis=2)), np.asarray(lit.any(axis=1))
    return extent(rows)[:, :, None] & extent(cols)[:, None, :]


def _coherence(field: np.ndarray) -> np.ndarray:
    """Pearson correlation of horizontally and vertically neighbouring pixels, both inside
    the box of lit pixels (1 where the box has no variation to correlate)."""
    box = _box(field > _LIT)
    pairs = [
        (field[:, :, :-1], field[:, :, 1:], box[:, :, :-1] & box[:, :, 1:]),
        (field[:, :-1, :], field[:, 1:, :], box[:, :-1, :] & box[:, 1:, :]),
    ]
    n = sum(m.sum(axis=(1, 2)) for _, _, m in pairs)
    sums = [sum((f(a, b) * m).sum(axis=(1, 2)) for a, b, m in pairs) for f in _MOMENTS]
    sa, sb, saa, sbb, sab = (v / np.maximum(n, 1) for v in sums)
    var = (saa - sa * sa) * (sbb - sb * sb)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sab - sa * sb) / np.sqrt(var)
    return np.where(var > 1e-12, r, 1.0)


_MOMENTS = (
    lambda a, b: a,
    lambda a, b: b,
    lambda a, b: a * a,
    lambda a, b: b * b,
    lambda a, b: a * b,
)


def measure_crop(crop: np.ndarray) -> dict:
    """``span`` and ``coherence`` of a photo's crop to its ink (2-D, ink bright, in [0, 1])."""
    h, w = crop.shape
    k = -(-max(h, w) // 56)  # disjoint k x k blocks: never upscaled, never smeared
    blocks = np.pad(crop, ((0, -h % k), (0, -w % k)))
    blocks = blocks.reshape(blocks.shape[0] // k, k, blocks.shape[1] // k, k).mean(axis=(1, 3))
    small = blocks / max(float(blocks.max()), 1e-12)
    return {"span": int(max(h, w)), "coherence": float(_coherence(small[None])[0])}


def evidence(field, source=None) -> list[dict]:
    """Each image's evidence: ``field`` is (N, 28, 28) or (N, 784) in [0, 1]; ``source``
    one entry per image, ``None`` or the :func:`measure_crop` of the photo it was cropped
    from (which replaces ``span`` and ``coherence`` measured on the field)."""
    field = np.asarray(field, dtype=np.float64).reshape(-1, 28, 28)
    features = _features(field)
    measured = spans(field)
    given = list(source) if source is not None else [None] * field.shape[0]
    out = []
    for i in range(field.shape[0]):
        ev = {key: float(features[key][i]) for key in ("ink", "solid", "coherence")}
        ev["span"] = int(measured[i])
        ev.update(given[i] or {})
        out.append({k: round(v, 4) if isinstance(v, float) else v for k, v in ev.items()})
    return out


def weigh(images, source=None, name: str = "input") -> list[dict]:
    """:func:`evidence` of images in either pixel convention (0-255, or [0, 1])."""
    images = np.asarray(images)
    full, _ = pixel_range(images, name)
    return evidence(images.astype(np.float64) / full, source)


def verdict(ev: dict, bounds: Bounds = BOUNDS) -> str | None:
    """Why ``ev`` (one entry of :func:`evidence`) is not a digit, or ``None`` if it may be."""
    if ev["span"] < bounds.span_min:
        return (
            f"the ink spans {ev['span']} pixel(s); a digit needs at least "
            f"{bounds.span_min:g} to be drawn"
        )
    if ev["ink"] < bounds.ink_min:
        return f"too little ink ({ev['ink']:.1%} of the field; digits have {bounds.ink_min:.1%}+)"
    if ev["ink"] > bounds.ink_max:
        return (
            f"too much ink ({ev['ink']:.1%} of the field; digits have up to {bounds.ink_max:.1%})"
        )
    if ev["solid"] > bounds.solid_max:
        return f"a filled blob, not strokes ({ev['solid']:.0%} of the ink is inside solid areas)"
    if ev["coherence"] < bounds.coherence_min:
        return (
            f"no strokes, only texture (neighbouring pixels correlate {ev['coherence']:.2f}; "
            f"digits' strokes {bounds.coherence_min:.3g}+)"
        )
    return None


def calibrate(images) -> Bounds:
    """The bounds of the module's docstring, from digit images ((N, 28, 28) uint8 pixels)."""
    field = np.asarray(images, dtype=np.float64).reshape(-1, 28, 28) / 255.0
    features = _features(field)
    return Bounds(
        ink_min=round(0.5 * float(features["ink"].min()), 3),
        ink_max=round(1.2 * float(features["ink"].max()), 3),
        solid_max=round(1.2 * float(features["solid"].max()), 3),
        coherence_min=round(0.5 * float(features["coherence"].min()), 3),
        span_min=round(0.5 * float(spans(field).min()), 3),
    )
