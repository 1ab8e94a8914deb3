"""``with mlp_xp.device("gpu:1"):``: the default device for the code inside the block.

Inside the block, everything that is not told where to go lands on that device: a
:class:`~mlp_xp.MLP` made without ``backend=``, :func:`~mlp_xp.load_model` without
``backend=``, the estimators with ``device="auto"``, and :func:`~mlp_xp.get_backend`
given ``None`` or ``"auto"``. A device named explicitly still wins. Blocks nest (the
innermost applies) and are private to their thread and ``asyncio`` context (a
:class:`contextvars.ContextVar`); outside any block the default is the
``MLP_XP_DEVICE`` environment variable, else the GPU when one is usable, else the CPU.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backends import Backend

__all__ = ["scoped_to", "scoped_device"]

_SCOPED: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "mlp_xp_device", default=None
)


@contextlib.contextmanager
def scoped_to(backend: Backend) -> Iterator[None]:
    """Make ``backend`` the default inside the block (:func:`mlp_xp.device` looks it up)."""
    token = _SCOPED.set(backend)
    try:
        yield
    finally:
        _SCOPED.reset(token)


def scoped_device() -> Backend | None:
    """The backend of the innermost ``with mlp_xp.device(...)`` block, or None outside."""
    return _SCOPED.get()
