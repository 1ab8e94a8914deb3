"""Ctrl-C inside a training step waits for the step to finish.

The library installs no signal handler of its own beyond this one, and only where
Python's default SIGINT handler is in place (a caller's handler, the command line's
say, is left in charge).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["hold_ctrl_c"]


@contextlib.contextmanager
def hold_ctrl_c(trainer: Trainer) -> Iterator[None]:
    """Hold a Ctrl-C that lands inside a step until the step is done.

    Only where Python's own SIGINT handler is in place, in the main thread:
    a caller's handler (the command line's, say) is left alone, and SIGTERM
    is never touched. A second Ctrl-C raises at once.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def hold(signum, frame):
        trainer._ctrl_c = True
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
