"""What every command shares: exit statuses, where lines and JSON go, user paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

from ..data import EMBEDDED

__all__ = ["EXIT_USAGE", "EXIT_INTERRUPTED", "emit_json", "log_stream", "resolve", "data_source"]

#: A user's mistake (bad flag, bad file, no GPU): one line on stderr.
EXIT_USAGE = 2
#: Stopped by Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130


def emit_json(value: Any) -> None:
    """Print one JSON value as the last line of stdout."""
    print(json.dumps(value))


def log_stream(args) -> IO[str]:
    """Where human-readable lines go: stdout, or stderr when --json owns stdout."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def resolve(path: str) -> Path:
    """A path as the user typed it, with ``~`` expanded."""
    return Path(path).expanduser()


def data_source(text: str) -> str:
    """What a model file records of ``--data``: the embedded set's name, or the
    folder's absolute path (so ``evaluate`` and ``--resume`` find it from anywhere)."""
    return text if text == EMBEDDED else str(resolve(text).resolve())
