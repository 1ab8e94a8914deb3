"""Running real ``mpiexec`` jobs from tests, each with a time limit (a fault never hangs)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

#: Seconds any one job may take before the test fails (and the job is killed).
JOB_LIMIT = 120


def mpiexec() -> str:
    """The launcher next to this Python (the mpich wheel's), or on PATH; skip without one."""
    pytest.importorskip("mpi4py", reason="the mpi extra is not installed")
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install mpich)")
    return found


def env() -> dict:
    """One BLAS thread per rank; the launcher's variables of an outer job removed."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "HYDRA_"))}
    out.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return out


def command(ranks: int, args: list[str], prelude: str = "") -> list[str]:
    """``mpiexec -n ranks python -c <prelude; mlp-xp args>``."""
    code = f"import sys; {prelude}\nfrom mlp_xp.cli import main; sys.exit(main({args!r}))"
    return [mpiexec(), "-n", str(ranks), sys.executable, "-c", code]


def run(ranks: int, args: list[str], prelude: str = "", limit: float = JOB_LIMIT):
    """Run a job to its end; fails the test (killing the job) past ``limit`` seconds."""
    return subprocess.run(
        command(ranks, args, prelude), capture_output=True, text=True, timeout=limit, env=env()
    )


def start(ranks: int, args: list[str], prelude: str = ""):
    """Start a job in its own process group (so a test can signal the launcher alone)."""
    return subprocess.Popen(
        command(ranks, args, prelude),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        start_new_session=True,
    )


def finish(job, limit: float = JOB_LIMIT) -> tuple[int, str, str, float]:
    """Wait for ``job``: (exit status, stdout, stderr, seconds); kill it past ``limit``."""
    t0 = time.monotonic()
    try:
        out, err = job.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        pytest.fail(f"the job did not end within {limit} s")
    return job.returncode, out, err, time.monotonic() - t0


def wait_for(path: Path, job, limit: float = JOB_LIMIT) -> None:
    """Wait until ``path`` exists (the job still running)."""
    t0 = time.monotonic()
    while not path.exists():
        if job.poll() is not None:
            pytest.fail(f"the job ended before {path.name} appeared: {job.communicate()}")
        if time.monotonic() - t0 > limit:
            os.killpg(job.pid, signal.SIGKILL)
            pytest.fail(f"{path.name} did not appear within {limit} s")
        time.sleep(0.1)


def params(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith("param/")}


def assert_same_model(a, b, atol=1e-5) -> None:
    pa, pb = params(a), params(b)
    assert sorted(pa) == sorted(pb)
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=0, atol=atol, err_msg=k)
