"""The machine this process runs on: its CPU's name, its cores, its peak memory.

Portable on Linux, macOS and Windows. Nothing platform-only is imported at
module level (``tests/test_platforms.py`` walks the package to keep it so);
each reading asks the source of the OS it runs on, inside a function, and falls
back where that source is missing:

CPU name     Linux: ``/proc/cpuinfo``; macOS: ``sysctl -n machdep.cpu.brand_string``;
             Windows: the registry's ``ProcessorNameString``; else
             :func:`platform.processor`, :func:`platform.machine`, ``"unknown CPU"``
cores        ``os.process_cpu_count`` (Python 3.13+), ``os.sched_getaffinity``
             (Linux: the cores this process may use), else ``os.cpu_count``
peak memory  Unix: ``resource.getrusage`` (``ru_maxrss`` is KiB on Linux and the
             BSDs, bytes on macOS); Windows: ``PeakWorkingSetSize`` from
             ``GetProcessMemoryInfo`` through :mod:`ctypes`; else ``None``: unknown,
             never a guess

``psutil`` is not used: it reports a peak only on Windows (``peak_wset``), so it
would not spare the per-platform code, and it would be one more binary
dependency for one number.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

__all__ = ["cpu_name", "core_count", "cpu_label", "peak_rss_bytes"]


def _linux_cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _macos_cpu_name() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _windows_cpu_name() -> str:
    try:
        import winreg

        key = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
        root = winreg.HKEY_LOCAL_MACHINE  # type: ignore[attr-defined,unused-ignore]  # Windows only
        with winreg.OpenKey(root, key) as handle:  # type: ignore[attr-defined,unused-ignore]
            name = winreg.QueryValueEx(handle, "ProcessorNameString")  # type: ignore[attr-defined,unused-ignore]
            return str(name[0]).strip()
    except (ImportError, OSError):
        return ""


#: ``sys.platform`` prefix -> where that OS keeps the CPU's name.
_CPU_NAME_SOURCES = {
    "linux": _linux_cpu_name,
    "darwin": _macos_cpu_name,
    "win32": _windows_cpu_name,
}


def cpu_name() -> str:
    """The CPU's marketing name (``"AMD EPYC 7B13"``), or the best the OS offers."""
    sources = [fn for key, fn in _CPU_NAME_SOURCES.items() if sys.platform.startswith(key)]
    name = sources[0]() if sources else ""
    return name or platform.processor() or platform.machine() or "unknown CPU"


def core_count() -> int:
    """The cores this process may use."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return counter() or 1
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0)) or 1
        except OSError:
            pass
    return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def cpu_label() -> str:
    """``"<CPU name>, <N> cores"``, read once per process."""
    return f"{cpu_name()}, {core_count()} cores"


def peak_rss_bytes() -> int | None:
    """The process's peak resident memory in bytes, or ``None`` where the OS says nothing."""
    if sys.platform == "win32":
        return _windows_peak_working_set()
    try:
        import resource
    except ImportError:
        return None
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def _windows_peak_working_set() -> int | None:
    """``PeakWorkingSetSize`` of this process (``K32GetProcessMemoryInfo``, kernel32)."""
    import ctypes

    class ProcessMemoryCounters(ctypes.Structure):  # PROCESS_MEMORY_COUNTERS, psapi.h
        _fields_ = [
            ("cb", ctypes.c_uint32),
            ("PageFaultCount", ctypes.c_uint32),
            *(
                (name, ctypes.c_size_t)
                for name in (
                    "PeakWorkingSetSize",
                    "WorkingSetSize",
                    "QuotaPeakPagedPoolUsage",
                    "QuotaPagedPoolUsage",
                    "QuotaPeakNonPagedPoolUsage",
                    "QuotaNonPagedPoolUsage",
                    "PagefileUsage",
                    "PeakPagefileUsage",
                )
            ),
        ]

    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        current = kernel32.GetCurrentProcess
        current.restype = ctypes.c_void_p
        read = kernel32.K32GetProcessMemoryInfo
        read.argtypes = [ctypes.c_void_p, ctypes.POINTER(ProcessMemoryCounters), ctypes.c_uint32]
        read.restype = ctypes.c_int
        counters = ProcessMemoryCounters()
        counters.cb = ctypes.sizeof(counters)
        if not read(current(), ctypes.byref(counters), counters.cb):
            return None
    except (AttributeError, OSError):
        return None
    return int(counters.PeakWorkingSetSize)
