"""The ``mlp-xp`` command line.

Every error a user can cause prints one line to stderr and exits 2; an
interrupted training run writes a resumable checkpoint and exits 130.
``--json`` makes the last line of stdout one JSON value (logs go to stderr).

The parser is :mod:`mlp_xp.cli.parser`; each command is one function in
:mod:`mlp_xp.cli.commands` (``train`` in :mod:`mlp_xp.cli.train`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

from ..errors import MlpXpError
from .console import EXIT_INTERRUPTED, EXIT_USAGE, emit_json

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlp-xp``; returns the exit status."""
    from .commands import COMMANDS
    from .parser import build_parser

    _printable_everywhere()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _warn_one_line
            return int(COMMANDS[args.command](args) or 0)
    except MlpXpError as exc:
        return _fail(args, str(exc))
    except KeyboardInterrupt:
        return _fail(args, "interrupted", EXIT_INTERRUPTED)
    except MemoryError as exc:  # CuPy's OutOfMemoryError is one: the GPU's memory, then
        from ..backends import device_error_for

        gpu = device_error_for(exc)
        if gpu is not None:
            return _fail(args, str(gpu))
        return _fail(
            args, f"out of host memory; {MEMORY_ADVICE.get(args.command, MEMORY_ADVICE[''])}"
        )
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        from ..backends import device_error_for

        error = device_error_for(exc)
        if error is None:
            raise
        return _fail(args, str(error))


#: What to change when a command runs out of host memory.
MEMORY_ADVICE = {
    "train": "try a smaller --batch-size, smaller --hidden layers or --stream",
    "bench": "try fewer --samples or smaller --batch-sizes",
    "": "try fewer or smaller inputs",
}


def _fail(args, message: str, code: int = EXIT_USAGE) -> int:
    """The error's one line on stderr; with ``--json``, also a JSON error object as the last
    line of stdout (so a script reading it gets an answer, not an empty line)."""
    line = message if code == EXIT_INTERRUPTED else f"error: {message}"
    print(f"mlp-xp {args.command}: {line}", file=sys.stderr)
    if getattr(args, "json", False):
        emit_json({"error": message, "command": args.command, "exit_status": code})
    return code


def _printable_everywhere() -> None:
    """Lines name the user's paths; where stdout/stderr cannot encode a character (a
    Windows console redirected to a file uses the ANSI code page; ``PYTHONIOENCODING=ascii``)
    it is printed as an escape such as ``\\u6570`` instead of failing with a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def _warn_one_line(message, category, filename, lineno, file=None, line=None):
    print(f"mlp-xp: warning: {message}", file=sys.stderr)
