"""A GPU rank of a test job: the counting CuPy double in place of CuPy, each step counted.

A test runs ``mpiexec`` with :func:`prelude` as every rank's first lines: ``import cupy``
then gives the double (simulated GPUs, two by default; NCCL's collectives carried by
MPI, :mod:`tests.cupy_double.nccl`), and at exit each rank writes ``rank<R>.json`` into
the test's folder: what each data-parallel step asked of the device, and the NCCL calls
its communicator made (name, element count, device).
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HELD: list = []  # the double's context, kept open (a dropped one would restore CuPy)


def prelude(
    out: Path, faults: tuple[str, ...] = (), devices: int = 2, only: tuple[int, ...] | None = None
) -> str:
    """The lines that make a rank of ``mpiexec ... python -c`` one of these (every rank,
    or the ranks in ``only``: the others see no GPU)."""
    start = f"rank.start({str(out)!r}, {tuple(faults)!r}, {devices})"
    if only is not None:
        start = f"from mpi4py import MPI\nif MPI.COMM_WORLD.Get_rank() in {tuple(only)!r}: {start}"
    return f"sys.path.insert(0, {str(ROOT)!r}); import tests.gpu_rank as rank\n{start}"


def start(out: str, faults: tuple[str, ...] = (), devices: int = 2) -> None:
    """Put the double (``devices`` GPUs) in place for the rest of this process; count steps."""
    from mlp_xp.parallel.trainer import ShardedStep

    from .cupy_double import STATE, installed

    _HELD.append(installed(devices=devices, faults=faults))  # held: for the life of the process
    _HELD[-1].__enter__()
    atexit.register(_HELD[-1].__exit__, None, None, None)  # closed after the report below
    steps: list[dict] = []
    where: dict = {}
    plain = ShardedStep.__call__

    def counted(self, state, plan, s):
        where["rank"] = self.world.rank
        before = STATE.counts.copy()
        result = plain(self, state, plan, s)
        steps.append({"step": s, **(STATE.counts.copy() - before).as_dict()})
        return result

    ShardedStep.__call__ = counted
    atexit.register(_report, Path(out), steps, where)


def _report(out: Path, steps: list[dict], where: dict) -> None:
    from cupy.cuda import nccl

    communicators = [
        {"device": c.device_id(), "rank": c.rank_id(), "size": c.size(), "calls": c.calls}
        for c in getattr(nccl, "COMMUNICATORS", [])
    ]
    from .cupy_double import STATE

    rank = where.get("rank", "-none")  # a job refused before its first step writes no rank
    record = {"steps": steps, "communicators": communicators, "contexts": sorted(STATE.contexts)}
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    sys.stdout.flush()
