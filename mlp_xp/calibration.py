"""Calibrated probabilities: the expected calibration error and temperature scaling.

A classifier is calibrated when, among the inputs it gives confidence ``p``, a
fraction ``p`` are right. The **expected calibration error** (ECE; Naeini et al.,
2015; Guo et al., 2017) bins predictions by their confidence (the top probability)
into 15 equal-width bins and averages ``|accuracy - confidence|`` over the bins,
weighted by how many predictions each holds.

**Temperature scaling** (Guo et al., 2017) divides the logits by one number ``T``
fitted on held-out data by minimising its negative log-likelihood: ``T > 1`` softens
an over-confident network, ``T < 1`` sharpens an under-confident one. The predicted
class never changes (argmax is unchanged), only the probabilities.

An ECE measured on the data ``T`` was fitted on is optimistic; :func:`cross_fitted_ece`
fits ``T`` on one half of a split and measures the other, both ways round.

The sums are made on the model's device in ``xp`` (a one-hot of bin indices and two
matrix products, no bincount); only ``3 x bins`` numbers come back to the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import functional as F

__all__ = [
    "ECE_BINS",
    "Reliability",
    "bin_sums",
    "reliability",
    "fit_temperature",
    "cross_fitted_ece",
]

ECE_BINS = 15


def bin_sums(xp, z, labels, bins: int = ECE_BINS):
    """Device (3, bins): per confidence bin, the count, summed confidence, summed hits.

    ``z`` are (already temperature-scaled) logits (N, K); ``labels`` (N,) integers.
    """
    probs = F.softmax(xp, z)
    conf = xp.max(probs, axis=1)
    hits = xp.astype(xp.argmax(z, axis=1) == labels, z.dtype)
    index = xp.minimum(xp.astype(xp.floor(conf * bins), xp.int64), bins - 1)
    onehot = xp.astype(index[:, None] == xp.arange(bins, device=z.device)[None, :], z.dtype)
    return xp.stack([xp.sum(onehot, axis=0), conf @ onehot, hits @ onehot])


@dataclass(frozen=True)
class Reliability:
    """Host per-bin figures and the ECE they give (empty bins hold NaN)."""

    counts: np.ndarray
    confidence: np.ndarray  # mean confidence per bin
    accuracy: np.ndarray  # accuracy per bin

    @classmethod
    def from_sums(cls, sums: np.ndarray) -> Reliability:
        counts, conf, hits = (np.asarray(s, dtype=np.float64) for s in sums)
        with np.errstate(invalid="ignore", divide="ignore"):
            return cls(counts, conf / counts, hits / counts)

    @property
    def ece(self) -> float:
        full = self.counts > 0
        gaps = np.abs(self.accuracy[full] - self.confidence[full]) * self.counts[full]
        return float(gaps.sum() / self.counts.sum())

    def to_dict(self) -> dict:
        def listed(a):
            return [None if not math.isfinite(v) else float(v) for v in a]

        return {
            "ece": self.ece,
            "bins": len(self.counts),
            "counts": [int(c) for c in self.counts],
            "confidence": listed(self.confidence),
            "accuracy": listed(self.accuracy),
        }


def _logits(model, X, batch_size: int = 4096):
    """The model's (unscaled) logits of all of ``X``, on its device."""
    X = model.check_input(X)
    xp, n = model.xp, X.shape[0]
    parts = [model.logits(X[s : min(s + batch_size, n), ...]) for s in range(0, n, batch_size)]
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def reliability(model, X, labels, bins: int = ECE_BINS, temperature: float | None = None):
    """:class:`Reliability` of a classifier on ``(X, labels)`` (``model.temperature``
    unless ``temperature`` is given)."""
    labels = model.backend.check(labels, "labels")
    t = model.temperature if temperature is None else temperature
    with model.backend.scope():
        z = _logits(model, X) / t
        return Reliability.from_sums(model.backend.get(bin_sums(model.xp, z, labels, bins)))


def _nll(xp, z, labels, t: float) -> float:
    logp = F.log_softmax(xp, z / t)
    picked = xp.sum(
        xp.where(labels[:, None] == xp.arange(z.shape[1], device=z.device)[None, :], logp, 0.0)
    )
    return -float(picked) / z.shape[0]


def fit_temperature(model, X, labels, lo: float = 0.05, hi: float = 20.0) -> float:
    """The ``T`` in ``[lo, hi]`` minimising the mean NLL of ``softmax(z / T)`` on ``(X, labels)``.

    Golden-section search on ``log T`` (the NLL is convex in ``1 / T``), to a relative
    precision of about 1e-4; the logits are computed once, each trial is one reduction.
    """
    labels = model.backend.check(labels, "labels")
    xp = model.xp
    with model.backend.scope():
        z = xp.astype(_logits(model, X), xp.float64)
        a, b = math.log(lo), math.log(hi)
        g = (math.sqrt(5) - 1) / 2
        c, d = b - g * (b - a), a + g * (b - a)
        fc, fd = _nll(xp, z, labels, math.exp(c)), _nll(xp, z, labels, math.exp(d))
        while b - a > 1e-4:
            if fc < fd:
                b, d, fd = d, c, fc
                c = b - g * (b - a)
                fc = _nll(xp, z, labels, math.exp(c))
            else:
                a, c, fc = c, d, fd
                d = a + g * (b - a)
                fd = _nll(xp, z, labels, math.exp(d))
    return math.exp((a + b) / 2)


def cross_fitted_ece(model, X, labels, bins: int = ECE_BINS) -> float:
    """The ECE of temperature scaling on data its ``T`` never saw.

    The samples are split into alternate halves; ``T`` fitted on each half scales the
    other's logits, and the two halves' bins are pooled into one ECE.
    """
    n = X.shape[0]
    xp = model.xp
    halves = [np.arange(0, n, 2), np.arange(1, n, 2)]
    sums: Any = 0.0  # the pooled bins (a host array after the first half)
    for fit_on, score_on in (halves, halves[::-1]):
        rows_fit, rows_score = (model.backend.put(r) for r in (fit_on, score_on))
        with model.backend.scope():
            Xf, yf = xp.take(X, rows_fit, axis=0), xp.take(labels, rows_fit, axis=0)
            Xs, ys = xp.take(X, rows_score, axis=0), xp.take(labels, rows_score, axis=0)
        t = fit_temperature(model, Xf, yf)
        with model.backend.scope():
            z = _logits(model, Xs) / t
            sums = sums + model.backend.get(bin_sums(xp, z, ys, bins))
    return Reliability.from_sums(sums).ece
