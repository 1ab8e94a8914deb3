"""What ``predict`` says of one input: the digit, its probability and the top 3.

One source for ``mlp-xp predict --json`` and the HTTP API of :mod:`mlp_xp.serve`, so
both answer with the same fields.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NO_DIGIT", "prediction"]

#: What ``predict`` says of an image with no digit in it (blank: no contrast).
NO_DIGIT = "no digit found (the image is blank)"


def prediction(label: str, probs: np.ndarray | None) -> dict:
    """One ``predict`` result; ``probs`` is None for a blank image (no guess)."""
    if probs is None:
        return {"input": label, "digit": None, "probability": None, "top3": [], "note": NO_DIGIT}
    top = np.argsort(-probs, kind="stable")[:3]
    return {
        "input": label,
        "digit": int(top[0]),
        "probability": float(probs[top[0]]),
        "top3": [{"digit": int(k), "probability": float(probs[k])} for k in top],
    }
