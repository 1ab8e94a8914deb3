"""A Python that looks like Windows (or macOS) to the package, on a Linux test machine.

Put this folder on ``PYTHONPATH`` and the interpreter imports it at start-up:

- ``resource``, ``fcntl``, ``termios``, ``pwd`` and ``grp`` cannot be imported;
- ``/proc`` does not exist for ``open``, ``io.open`` or ``os.open``;
- ``os.sched_getaffinity`` and ``signal.SIGTERM`` are gone;
- opening a folder with ``os.open`` raises ``PermissionError``, as on Windows, so
  a folder cannot be fsync'd;
- the first ``os.replace`` onto each existing file raises ``PermissionError``, as
  Windows does while another process holds the target open;
- text opened by the package's own files without an explicit encoding (so in the
  locale's encoding) is recorded: ``open``, ``io.open``, ``Path.open``,
  ``Path.read_text``, ``Path.write_text``, and any other ``EncodingWarning``
  (with ``PYTHONWARNDEFAULTENCODING=1``) attributed to them.

At exit it writes what it refused and recorded as JSON to ``$MLP_XP_PLATFORM_REPORT``.
"""

import atexit
import builtins
import io
import json
import os
import pathlib
import signal
import sys
import warnings

BLOCKED = ("resource", "fcntl", "termios", "pwd", "grp")
REPORT = {"folder_opens_refused": 0, "replaces_refused": 0, "locale_encoded_text": []}
_PACKAGE = os.sep + "mlp_xp" + os.sep


class _NotOnThisPlatform:
    """A meta-path finder that refuses the blocked modules."""

    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotOnThisPlatform())
for _name in BLOCKED:
    sys.modules.pop(_name, None)


def _in_proc(path) -> bool:
    try:
        return os.fsdecode(os.fspath(path)).startswith("/proc")
    except TypeError:  # a file descriptor
        return False


def _missing(path):
    return FileNotFoundError(2, "No such file or directory", os.fspath(path))


def _note_locale_text(mode, encoding, depth=2):
    """Record the caller ``depth`` frames up when it opens text in the locale's encoding;
    return the encoding to pass on (``"locale"`` says so, without a second warning)."""
    if "b" in mode or encoding is not None:
        return encoding
    frame = sys._getframe(depth)
    if _PACKAGE in frame.f_code.co_filename:
        REPORT["locale_encoded_text"].append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
    return "locale"


_real_open = builtins.open


def _open(file, mode="r", buffering=-1, encoding=None, *args, **kwargs):
    if _in_proc(file):
        raise _missing(file)
    encoding = _note_locale_text(mode, encoding)
    return _real_open(file, mode, buffering, encoding, *args, **kwargs)


builtins.open = io.open = _open
_Path = pathlib.Path
_real_path_open, _real_read_text, _real_write_text = _Path.open, _Path.read_text, _Path.write_text


def _path_open(self, mode="r", buffering=-1, encoding=None, *args, **kwargs):
    encoding = _note_locale_text(mode, encoding)
    return _real_path_open(self, mode, buffering, encoding, *args, **kwargs)


def _read_text(self, encoding=None, errors=None):
    return _real_read_text(self, _note_locale_text("r", encoding), errors)


def _write_text(self, data, encoding=None, errors=None, newline=None):
    return _real_write_text(self, data, _note_locale_text("w", encoding), errors, newline)


_Path.open, _Path.read_text, _Path.write_text = _path_open, _read_text, _write_text
_real_os_open = os.open


def _os_open(path, flags, mode=0o777, *, dir_fd=None):
    if _in_proc(path):
        raise _missing(path)
    if dir_fd is None and os.path.isdir(path):
        REPORT["folder_opens_refused"] += 1
        raise PermissionError(13, "Permission denied", os.fspath(path))
    return _real_os_open(path, flags, mode, dir_fd=dir_fd)


os.open = _os_open
_real_replace = os.replace
_refused_once = set()


def _replace(src, dst, **kwargs):
    target = os.path.abspath(os.fspath(dst))
    if os.path.exists(target) and target not in _refused_once:
        _refused_once.add(target)
        REPORT["replaces_refused"] += 1
        raise PermissionError(13, "Access is denied", os.fspath(dst))
    return _real_replace(src, dst, **kwargs)


os.replace = _replace
for _attr in ("sched_getaffinity", "process_cpu_count"):
    if hasattr(os, _attr):
        delattr(os, _attr)
if hasattr(signal, "SIGTERM"):
    del signal.SIGTERM
_real_showwarnmsg = warnings._showwarnmsg


def _showwarnmsg(msg):
    if issubclass(msg.category, EncodingWarning) and _PACKAGE in str(msg.filename):
        REPORT["locale_encoded_text"].append(f"{msg.filename}:{msg.lineno}")
    _real_showwarnmsg(msg)


warnings._showwarnmsg = _showwarnmsg


@atexit.register
def _write_report():
    path = os.environ.get("MLP_XP_PLATFORM_REPORT")
    if path:
        with _real_open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(REPORT) + "\n")
