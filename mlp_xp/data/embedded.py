"""The embedded 5,000-digit MNIST subset that every command uses by default."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import DataError

__all__ = ["EMBEDDED", "embedded_dir"]

#: The name ``--data`` and :func:`~mlp_xp.data.load_digits` know the subset by.
EMBEDDED = "mnist-5k"


def embedded_dir() -> Path:
    """Folder of the embedded subset (provenance and licence in its ``PROVENANCE.md``).

    In a source checkout (or an editable install) it is the repository's
    ``data/mnist-5k``; an installed wheel carries the same files as the
    ``mlp_xp._embedded`` package data.
    """
    checkout = Path(__file__).resolve().parents[2] / "data" / EMBEDDED
    if checkout.is_dir():
        return checkout
    try:
        return Path(str(resources.files("mlp_xp._embedded") / EMBEDDED))
    except ModuleNotFoundError:
        raise DataError(
            "the embedded mnist-5k digits are missing from this installation; pass --data DIR"
        ) from None
