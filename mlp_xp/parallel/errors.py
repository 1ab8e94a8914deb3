"""The errors of data-parallel runs (below the world and its communicators, which raise them)."""

from __future__ import annotations

from ..errors import MlpXpError

__all__ = ["DistributedError", "AgreedError"]


class DistributedError(MlpXpError, RuntimeError):
    """A data-parallel run cannot start or go on (no MPI, ranks that disagree, a lost rank)."""


class AgreedError(DistributedError):
    """A refusal every rank reaches together, from values they all gathered: the job ends
    in order, rank 0 saying why in one line (no rank is left waiting, nothing to abort)."""
