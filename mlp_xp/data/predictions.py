"""What ``predict`` says of one input: the digit, its probability and the top 3 -- or
why it names none (a blank image; an input that is not plausibly a digit).

One source for ``mlp-xp predict --json`` and the HTTP API of :mod:`mlp_xp.serve`, so
both answer with the same fields and the same verdicts.
"""

from __future__ import annotations

import numpy as np

from .plausible import verdict

__all__ = ["NO_DIGIT", "DIGIT_SETS", "prediction", "weighs_digits"]

#: What ``predict`` says of an image with no digit in it (blank: no contrast).
NO_DIGIT = "no digit found (the image is blank)"


#: The recognised training sets (``augmentation.dataset`` in a model file) of digit models;
#: ``None``: not recognised, or not recorded. Only these models' inputs are weighed as
#: digits (a Fashion-MNIST model's coat is not "not a digit").
DIGIT_SETS = (None, "MNIST", "the embedded MNIST digits")


def weighs_digits(meta: dict) -> bool:
    """Whether a model (its file's ``meta``) is one of digits, whose inputs are weighed."""
    return (meta.get("augmentation") or {}).get("dataset") in DIGIT_SETS


def prediction(label: str, probs: np.ndarray | None, evidence: dict, digits: bool) -> dict:
    """One ``predict`` result; ``probs`` is None for a blank image, and an input whose
    ``evidence`` is not a digit's (:mod:`mlp_xp.data.plausible`) gets no guess either
    from a model of ``digits``."""
    none: dict = {"input": label, "digit": None, "probability": None, "top3": []}
    if probs is None:
        return {**none, "note": NO_DIGIT}
    reason = verdict(evidence) if digits else None
    if reason is not None:
        return {**none, "note": f"not a digit: {reason}", "evidence": evidence}
    top = np.argsort(-probs, kind="stable")[:3]
    return {
        "input": label,
        "digit": int(top[0]),
        "probability": float(probs[top[0]]),
        "top3": [{"digit": int(k), "probability": float(probs[k])} for k in top],
        "evidence": evidence,
    }
