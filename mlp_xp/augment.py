"""Data augmentation, applied to each training batch on the training device."""

from __future__ import annotations

from .errors import ConfigError

AUGMENTATIONS = ("none",)


def make_augmenter(name: str, image_shape=(28, 28)):
    """The batch transform ``f(xp, batch, rng, backend)`` for ``name`` (None for ``none``)."""
    if name == "none":
        return None
    raise ConfigError(f"unknown augmentation {name!r}: choose one of {', '.join(AUGMENTATIONS)}")
