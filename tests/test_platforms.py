"""Linux, macOS and Windows: no platform-only import at module level, portable host
readings, atomic writes and interrupts that work where Windows differs, and the whole
command line run in a Python that looks like Windows (``tests/windows_like``)."""

import ast
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

import mlp_xp
from mlp_xp import MLP, fileio, host, load_model, save_model
from mlp_xp.cli import main
from mlp_xp.cli.bench import format_table
from mlp_xp.cli.train import stop_on_signals
from mlp_xp.errors import OutputError

from .helpers import idx_folder

PACKAGE = Path(mlp_xp.__file__).parent
#: Modules some supported OS lacks (POSIX-only, Windows-only, or not everywhere).
PLATFORM_ONLY = {
    "resource", "fcntl", "termios", "tty", "pty", "pwd", "grp", "posix", "crypt", "spwd",
    "nis", "syslog", "readline", "curses", "_curses", "msvcrt", "winreg", "_winreg",
    "winsound", "_winapi", "nt", "ctypes.wintypes", "multiprocessing.popen_fork",
}  # fmt: skip


# --------------------------------------------------------------------------
# no platform-only module imported at module level
# --------------------------------------------------------------------------


def _module_level_imports(tree: ast.Module):
    """(line, module) of every import run when the module is imported: at module level,
    in module-level if/try/with blocks and class bodies, but not inside functions."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield node.lineno, node.args[0].value
        todo.extend(ast.iter_child_nodes(node))


def test_no_module_of_the_package_imports_a_platform_only_module_at_module_level():
    found = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += [
            f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
            for line, name in _module_level_imports(tree)
            if name in PLATFORM_ONLY or name.split(".")[0] in PLATFORM_ONLY
        ]
    assert found == []


def test_the_import_walker_sees_imports_hidden_in_blocks_but_not_in_functions():
    tree = ast.parse(
        "import os\ntry:\n    import resource\nexcept ImportError:\n    pass\n"
        "class A:\n    import fcntl\n"
        "def f():\n    import winreg\n"
        "if True:\n    from msvcrt import getch\n"
        "importlib.import_module('termios')\n"
    )
    names = {name for _, name in _module_level_imports(tree)}
    assert {"resource", "fcntl", "msvcrt", "termios"} <= names and "winreg" not in names


# --------------------------------------------------------------------------
# host readings on each OS (their sources faked where this machine has none)
# --------------------------------------------------------------------------


def test_the_cpu_name_comes_from_each_oss_own_source(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda cmd, **kw: (
            types.SimpleNamespace(stdout="Apple M2 Pro\n")
            if cmd == ["sysctl", "-n", "machdep.cpu.brand_string"]
            else pytest.fail(f"unexpected command {cmd}")
        ),
    )
    assert host.cpu_name() == "Apple M2 Pro"

    class Key:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    winreg = types.SimpleNamespace(
        HKEY_LOCAL_MACHINE="HKLM",
        OpenKey=lambda root, key: Key(),
        QueryValueEx=lambda key, name: ("Intel(R) Core(TM) i7-1185G7 @ 3.00GHz ", 1),
    )
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "winreg", winreg)
    assert host.cpu_name() == "Intel(R) Core(TM) i7-1185G7 @ 3.00GHz"


def test_without_proc_cpuinfo_the_cpu_name_falls_back(monkeypatch):
    real_open = open

    def no_proc(file, *args, **kwargs):
        if str(file).startswith("/proc"):
            raise FileNotFoundError(2, "No such file or directory", file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr("platform.processor", lambda: "")
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert host.cpu_name() == "aarch64"
    monkeypatch.setattr(sys, "platform", "sunos5")  # an OS with no source of its own
    monkeypatch.setattr("platform.machine", lambda: "")
    assert host.cpu_name() == "unknown CPU"


def test_cores_without_sched_getaffinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.delattr(os, "process_cpu_count", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert host.core_count() == 12
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert host.core_count() == 1


@pytest.mark.parametrize(
    "platform_name, scale", [("linux", 1024), ("darwin", 1), ("freebsd14", 1024)]
)
def test_peak_memory_units_of_ru_maxrss(monkeypatch, platform_name, scale):
    resource = types.SimpleNamespace(
        RUSAGE_SELF=0, getrusage=lambda who: types.SimpleNamespace(ru_maxrss=5000)
    )
    monkeypatch.setitem(sys.modules, "resource", resource)
    monkeypatch.setattr(sys, "platform", platform_name)
    assert host.peak_rss_bytes() == 5000 * scale


def test_peak_memory_is_none_where_the_os_gives_no_reading(monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", None)  # import resource -> ImportError
    monkeypatch.setattr(sys, "platform", "linux")
    assert host.peak_rss_bytes() is None
    row = {
        "backend": "numpy",
        "device": "cpu",
        "batch_size": 128,
        "epoch_seconds": 1.0,
        "samples_per_second": 100.0,
        "gflops": 1.0,
        "fraction_of_matmul": 0.5,
        "host_peak_rss_bytes": None,
    }
    table = format_table(
        {
            "network": "784-300-100-10",
            "data": "x",
            "results": [row],
            "devices": [],
            "unavailable": {},
            "speedup": {},
        }
    )
    assert table.splitlines()[-1].split()[-2:] == ["-", "-"]


def test_windows_peak_working_set_through_ctypes(monkeypatch):
    import ctypes

    calls = {}

    class Function:
        def __init__(self, fn):
            self.fn = fn

        def __call__(self, *args):
            return self.fn(*args)

    def get_info(handle, counters_ref, size):
        counters = counters_ref._obj
        calls.update(handle=handle, size=size, cb=counters.cb)
        counters.PeakWorkingSetSize = 123_456_789
        counters.WorkingSetSize = 1
        return 1

    kernel32 = types.SimpleNamespace(
        GetCurrentProcess=Function(lambda: -1), K32GetProcessMemoryInfo=Function(get_info)
    )
    monkeypatch.setattr(ctypes, "WinDLL", lambda name, **kw: kernel32, raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    assert host.peak_rss_bytes() == 123_456_789
    # PROCESS_MEMORY_COUNTERS: 2 DWORDs and 8 SIZE_Ts, 72 bytes on 64-bit Windows
    expected = 8 + 8 * ctypes.sizeof(ctypes.c_size_t)
    assert calls == {"handle": -1, "size": expected, "cb": expected}
    kernel32.K32GetProcessMemoryInfo = Function(lambda *a: 0)  # the call failed
    assert host.peak_rss_bytes() is None


# --------------------------------------------------------------------------
# atomic writes where Windows refuses a rename or a folder fsync
# --------------------------------------------------------------------------


def test_a_refused_rename_is_retried_until_the_other_process_lets_go(tmp_path, monkeypatch):
    path = fileio.atomic_write_text(tmp_path / "h.json", "old")
    real, tries = os.replace, []

    def held_open(src, dst):
        tries.append(dst)
        if len(tries) < 3:
            raise PermissionError(13, "Access is denied", str(dst))
        real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", held_open)
    fileio.atomic_write_text(path, "new")
    assert len(tries) == 3 and path.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]


def test_a_rename_refused_for_good_is_an_output_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = fileio.atomic_write_text(tmp_path / "h.json", "old")
    monkeypatch.setattr(fileio, "REPLACE_RETRIES", (0.0, 0.0))

    def refused(src, dst):
        raise PermissionError(13, "Access is denied", str(dst))

    monkeypatch.setattr(fileio.os, "replace", refused)
    with pytest.raises(OutputError, match=r"h\.json: cannot write it \(Access is denied\)"):
        fileio.atomic_write_text(path, "new")
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]


@pytest.mark.parametrize("fsync_folders", [True, False])
def test_folder_fsync_is_skipped_or_survives_where_folders_cannot_be_opened(
    tmp_path, monkeypatch, fsync_folders
):
    real_open, folder_opens = os.open, []

    def windows_open(path, flags, *args, **kwargs):
        if os.path.isdir(path):
            folder_opens.append(path)
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "open", windows_open)
    monkeypatch.setattr(fileio, "FSYNC_FOLDERS", fsync_folders)
    save_model(tmp_path / "m.npz", MLP(4, (3,), 2, backend="cpu"))
    assert load_model(tmp_path / "m.npz", "cpu").layer_sizes == [4, 3, 2]
    assert len(folder_opens) == (1 if fsync_folders else 0)


def test_an_unwritable_out_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    out = tmp_path / "file" / "model.npz"
    code = main(["train", "--epochs", "1", "--hidden", "4", "--augment", "none", "--out", str(out)])
    out_text, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{out}: cannot write it (" in err and "Traceback" not in err
    assert "device:" in out_text and "network" not in out_text  # refused before training
    assert issubclass(OutputError, OSError)
    with pytest.raises(OutputError, match="Is a directory"):
        fileio.check_writable(tmp_path)


# --------------------------------------------------------------------------
# interrupts where SIGTERM is missing or Ctrl-Break exists
# --------------------------------------------------------------------------


class Stoppable:
    def __init__(self):
        self.stops = 0

    def request_stop(self):
        self.stops += 1


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs a spare POSIX signal")
def test_stop_signals_are_those_the_os_has(monkeypatch):
    monkeypatch.delattr(signal, "SIGTERM")  # as where the OS has none: costs nothing
    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)  # Windows' Ctrl-Break
    trainer = Stoppable()
    before = signal.getsignal(signal.SIGUSR1)
    with stop_on_signals(trainer):
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
    assert trainer.stops == 1 and signal.getsignal(signal.SIGUSR1) is before


def test_stop_signals_outside_the_main_thread_install_nothing():
    trainer, errors = Stoppable(), []

    def run():
        try:
            with stop_on_signals(trainer):
                pass
        except Exception as exc:  # signal.signal raises ValueError off the main thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []


# --------------------------------------------------------------------------
# the whole command line in a Python that looks like Windows
# --------------------------------------------------------------------------

WINDOWS_LIKE = Path(__file__).parent / "windows_like"


def _env(report: Path) -> dict:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(WINDOWS_LIKE), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        MLP_XP_PLATFORM_REPORT=str(report),
        PYTHONWARNDEFAULTENCODING="1",  # EncodingWarning wherever a locale encoding is used
        LC_ALL="C",  # an ASCII locale: nothing may rely on the locale's encoding
        PYTHONUTF8="0",
        PYTHONCOERCECLOCALE="0",
    )
    env.pop("PYTHONIOENCODING", None)
    return env


def _run(env, *args, check=0, **kwargs):
    out = subprocess.run(
        [sys.executable, *map(str, args)],
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
        **kwargs,
    )
    assert out.returncode == check, out.stderr
    assert "Traceback" not in out.stderr
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="the double imitates Windows on POSIX")
def test_train_interrupt_resume_evaluate_predict_where_unix_modules_and_proc_are_missing(
    tmp_path, digits
):
    root = tmp_path / "my runs ü 数字"
    report = tmp_path / "report.jsonl"
    env = _env(report)
    probe = _run(
        env,
        "-c",
        "import sys, mlp_xp; from mlp_xp.backends import get_backend; b = get_backend('cpu');"
        "print(b.device); print(b.memory_info()['host_peak_rss_bytes']);"
        "print(sorted(m for m in ('resource', 'fcntl', 'termios') if m in sys.modules))",
    )
    device, rss, loaded = probe.stdout.splitlines()
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    assert device == f"cpu ({fallback}, {os.cpu_count()} cores)"  # neither /proc nor affinity
    assert rss == "None" and loaded == "[]"
    assert json.loads(_run(env, "-m", "mlp_xp", "devices", "--json").stdout)["auto"] == "numpy"

    run = root / "run ü"
    common = "--epochs 3 --batch-size 1 --lr 0.002 --hidden 16 --device cpu --augment none --seed 5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp_xp", "train", *common.split(), "--run-dir", str(run)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
    )
    for line in proc.stdout:
        if line.startswith("network"):
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the one interrupt every OS delivers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert (run / "checkpoint.npz").is_file() and not (run / "model.npz").exists()

    resumed = _run(env, "-m", "mlp_xp", "train", "--resume", run / "checkpoint.npz", "--quiet")
    assert "resumed from" in resumed.stdout and (run / "model.npz").is_file()
    history = json.loads((run / "history.json").read_bytes().decode("utf-8"))
    assert history["history"]["epoch"] == [1, 2, 3]
    # recorded as that process's file-system encoding (ASCII here: undecodable bytes escaped)
    recorded = history["model"].encode("ascii", "surrogateescape")
    assert recorded == os.fsencode((run / "model.npz").resolve())

    data = idx_folder(root / "données test", n=40, test=True)
    result = json.loads(
        _run(
            env, "-m", "mlp_xp", "evaluate", run / "model.npz", "--data", data,
            "--split", "test", "--json",
        ).stdout.splitlines()[-1]
    )  # fmt: skip
    assert result["samples"] == 20 and 0 <= result["accuracy"] <= 1
    np.save(root / "chiffres à lire.npy", digits.images[[0, 600]])
    predicted = _run(
        env, "-m", "mlp_xp", "predict", run / "model.npz", root / "chiffres à lire.npy"
    )
    lines = predicted.stdout.splitlines()
    assert len(lines) == 2 and all(re.search(r"lire\.npy\[\d\]: \d \(", x) for x in lines)
    assert "chiffres \\udcc3\\udca0 lire.npy[1]: " in lines[1]  # escaped, not a crash

    reports = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert sum(r["folder_opens_refused"] for r in reports) > 0  # every write took that path
    assert sum(r["replaces_refused"] for r in reports) > 0  # and the retry on a held file
    assert [w for r in reports for w in r["locale_encoded_text"]] == []


def test_data_model_and_run_paths_with_spaces_and_non_ascii_letters(tmp_path, capsys):
    data = idx_folder(tmp_path / "données d'entraînement 数字", n=120, test=True)
    run = tmp_path / "runs é" / "première run"
    args = ["train", "--data", data, "--run-dir", run, "--epochs", "2", "--hidden", "8"]
    assert main([*map(str, args), "--augment", "none", "--quiet"]) == 0
    model = run / "model.npz"
    assert load_model(model, "cpu").meta["data"]["source"] == str(data.resolve())
    info = json.loads((run / "history.json").read_bytes().decode("utf-8"))
    assert info["model"] == str(model.resolve())
    assert main(["evaluate", str(model), "--split", "test", "--json"]) == 0  # data from the file
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["samples"] == 20
    assert main(["plot", str(run)]) == 0
    assert (run / "confusion_matrix.png").is_file()  # found the model through history.json
