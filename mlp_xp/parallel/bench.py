"""``mlp-xp bench --ranks 1,2``: the same run on 1, 2, ... CPU ranks, timed side by side.

Each rank count runs ``mpiexec -n N python -m mlp_xp train --distributed`` with one BLAS
thread per rank, on the same data and global batch; the rank counts take turns (``rounds``
times), so a busy machine slows them alike. An epoch's time is rank 0's (every rank
finishes a step together); the first epoch of each job is a warm-up and is left out.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, DataError
from ..train.lookahead import BLAS_THREAD_VARS

__all__ = ["mpiexec", "time_ranks", "format_ranks"]

#: Seconds one job may take before the benchmark gives up on it.
JOB_LIMIT = 600


def mpiexec() -> str:
    """The launcher beside this Python (the ``mpich`` wheel's) or on PATH."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise ConfigError('--ranks needs mpi4py and an MPI: pip install ".[mpi]"') from None
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        raise ConfigError("--ranks needs an mpiexec launcher: pip install mpich")
    return found


def _job(launcher: str, ranks: int, train_args: list[str]) -> list[float]:
    """Rank 0's epoch times of one ``train --distributed`` job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "HYDRA_"))}
    env.update(dict.fromkeys(BLAS_THREAD_VARS, "1"))  # one BLAS thread per rank
    command = [launcher, "-n", str(ranks), sys.executable, "-m", "mlp_xp", "train"]
    command += ["--distributed", "--json", "--quiet", *train_args]
    try:
        job = subprocess.run(command, capture_output=True, text=True, timeout=JOB_LIMIT, env=env)
    except subprocess.TimeoutExpired:
        raise DataError(f"{ranks} ranks did not finish in {JOB_LIMIT} s") from None
    lines = [line for line in job.stdout.splitlines() if line.startswith("{")]
    if job.returncode != 0 or not lines:
        last = (job.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"{ranks} ranks failed (exit {job.returncode}): {last}")
    return list(json.loads(lines[-1])["epoch_seconds"])


def time_ranks(
    ranks: list[int],
    batch_size: int,
    epochs: int,
    rounds: int = 2,
    data: str = "mnist-5k",
    log: Callable[[str], None] = lambda s: None,
) -> list[dict]:
    """Median epoch time, speedup and parallel efficiency for each number of ranks.

    ``epochs`` timed epochs per job (plus one warm-up), ``rounds`` jobs per rank count.
    Speedups are against the first entry of ``ranks`` (1 rank, usually).
    """
    launcher = mpiexec()
    train_args = ["--data", data, "--batch-size", str(batch_size), "--epochs", str(epochs + 1)]
    times: dict[int, list[float]] = {n: [] for n in ranks}
    with tempfile.TemporaryDirectory() as folder:
        train_args += ["--augment", "none", "--out", str(Path(folder) / "model.npz")]
        for r in range(rounds):
            for n in ranks:
                epoch_seconds = _job(launcher, n, train_args)[1:]
                times[n] += epoch_seconds
                shown = " ".join(f"{t:.3f}" for t in epoch_seconds)
                log(f"round {r + 1}/{rounds}, {n} rank(s): {shown} s")
    base_n = ranks[0]
    base = statistics.median(times[base_n])
    rows = []
    for n in ranks:
        median = statistics.median(times[n])
        speedup = base / median
        rows.append({
            "ranks": n,
            "batch_size": batch_size,
            "epoch_seconds": median,
            "epochs_timed": len(times[n]),
            "speedup": speedup,
            "efficiency": speedup * base_n / n,
        })  # fmt: skip
    return rows


def format_ranks(rows: list[dict], data: str) -> str:
    """The table ``bench --ranks`` prints."""
    lines = [
        f"data-parallel CPU ranks, one BLAS thread each, {data}, global batch "
        f"{rows[0]['batch_size']}; median epoch time after a warm-up epoch",
        "",
        "ranks   s/epoch   speedup   efficiency",
    ]
    for row in rows:
        lines.append(
            f"{row['ranks']:>5}   {row['epoch_seconds']:7.3f}   {row['speedup']:6.2f}x   "
            f"{100 * row['efficiency']:8.0f}%"
        )
    return "\n".join(lines)
