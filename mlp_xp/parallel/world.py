"""The processes of a data-parallel run, as MPI sees them (mpi4py, imported lazily).

A :class:`World` is the communicator a launcher (``mpiexec``, Slurm's ``srun``) made:
this process's ``rank`` among ``size``, its ``local_rank`` among the processes of its
machine (the rank in MPI's shared-memory communicator, which picks its GPU), and the
few collectives training needs:

- :meth:`World.allreduce` sums one flat buffer in place: NumPy buffers through MPI,
  CuPy buffers through NCCL (:mod:`mlp_xp.parallel.nccl`) -- one call per step;
- :meth:`World.broadcast` copies rank 0's buffer to every rank (initial parameters);
- :meth:`World.gather` / :meth:`World.agree` for small host values at start-up and at
  epoch ends (configurations, losses, held-out metrics);
- :meth:`World.vote` agrees on "stop" one step late, without blocking the step: a
  non-blocking allreduce started at one step is read at the next, so every rank stops
  after the same step;
- :meth:`World.abort` ends every rank (``MPI_Abort``) when one cannot go on, so
  nobody waits forever in a collective.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from ..errors import first_line
from .errors import AgreedError, DistributedError

__all__ = [
    "World",
    "LocalWorld",
    "DistributedError",
    "AgreedError",
    "start_world",
    "launched_size",
]

#: Environment variables launchers set on every process they start.
LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_NTASKS", "MPI_LOCALNRANKS")


#: Seconds a rank that ends the job waits between printing why and ``MPI_Abort``.
ABORT_GRACE = 0.5


def launched_size() -> int | None:
    """How many processes the launcher says it started, or None outside a launcher."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return None


def start_world() -> World:
    """The world of this process; one line when MPI is missing or no launcher started it."""
    if launched_size() is None:
        raise DistributedError(
            "--distributed runs under an MPI launcher: mpiexec -n N mlp-xp train "
            "--distributed ... (or srun); without one, leave --distributed out"
        )
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"--distributed needs mpi4py and an MPI library ({exc}); "
            'install them with: pip install ".[mpi]"'
        ) from None
    return World(MPI.COMM_WORLD, MPI)


class World:
    """An MPI communicator with the collectives of data-parallel training.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    mpi : the ``mpi4py.MPI`` module
    """

    def __init__(self, comm, mpi):
        self.comm, self.MPI = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(mpi.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self._vote = None  # the pending non-blocking stop vote: (request, buffer)
        self._nccl = None
        self.collectives = 0  # gradient allreduces so far (tests count them)
        self.watchdog: Watchdog | None = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    # -- device buffers ------------------------------------------------------------
    def allreduce(self, buffer, backend) -> None:
        """Sum ``buffer`` (1-D, contiguous) over all ranks, in place, on its device."""
        self.collectives += 1
        if backend.kind == "gpu":
            self._communicator(backend).allreduce(buffer)
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def broadcast(self, buffer, backend) -> None:
        """Overwrite ``buffer`` with rank 0's, in place, on its device."""
        if backend.kind == "gpu":
            self._communicator(backend).broadcast(buffer)
        else:
            self.comm.Bcast(buffer, root=0)

    def _communicator(self, backend):
        if self._nccl is None:
            from .nccl import NcclCommunicator

            self._nccl = NcclCommunicator(self, backend)
        return self._nccl

    # -- host values -----------------------------------------------------------------
    def gather(self, value) -> list:
        """Every rank's ``value`` (small, picklable), in rank order, on every rank."""
        return self.comm.allgather(value)

    def agree(self, fields: dict, what: str) -> None:
        """Refuse to start when ranks differ in any of ``fields`` (naming the first one)."""
        everyone = self.gather(fields)
        for name in fields:
            values = [f.get(name) for f in everyone]
            differing = [r for r, v in enumerate(values) if v != values[0]]
            if differing:
                r = differing[0]
                raise AgreedError(
                    f"ranks were started with different {what}: {name} is {values[0]!r} on "
                    f"rank 0 but {values[r]!r} on rank {r}; start every rank with the same "
                    "command and data"
                )

    def vote(self, stop: bool) -> bool:
        """Post this rank's ``stop`` and return the result of the previous vote (any rank)."""
        result = self.finish_vote()
        flag = np.array([1 if stop else 0], dtype=np.int32)
        out = np.zeros(1, dtype=np.int32)
        request = self.comm.Iallreduce(flag, out, op=self.MPI.MAX)
        self._vote = (request, out, flag)
        return result

    def finish_vote(self) -> bool:
        """Complete the pending vote, if any; True when some rank asked to stop."""
        if self._vote is None:
            return False
        request, out, _ = self._vote
        request.Wait()
        self._vote = None
        return bool(out[0])

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, message: str, code: int = 2) -> None:
        """Print ``message`` (one line) and end every rank of the job now."""
        print(message, file=sys.stderr, flush=True)
        time.sleep(ABORT_GRACE)  # the launcher forwards the line before it ends the job
        self.comm.Abort(code)
        os._exit(code)  # MPI_Abort may return while the launcher tears the job down


class Watchdog:
    """Ends the job (``MPI_Abort``) when no step finishes for ``timeout`` seconds.

    A rank that dies is noticed by the launcher; a rank that hangs (a lost peer, a
    stuck device) is noticed here: the thread wakes once a second and compares the
    time since the last :meth:`beat` with ``timeout``. Before it ends the job, rank 0
    calls :attr:`last_words` (the command line sets it to write a checkpoint of the last
    finished step: the stuck rank 0 waits in a collective, between steps or before a
    step's update) and adds what it returns to the line; the other ranks wait
    :data:`GRACE` seconds more, so rank 0 is the one that ends the job.
    """

    #: How much longer than rank 0 the other ranks wait.
    GRACE = 10.0

    def __init__(self, world: World, timeout: float):
        self.world, self.timeout = world, float(timeout)
        if not world.is_root:
            self.timeout += self.GRACE
        self.last_words: Callable[[], str] | None = None
        self.last = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mlp-xp-watchdog", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout / 4)):
            idle = time.monotonic() - self.last
            if idle > self.timeout:
                self.world.abort(
                    f"mlp-xp train: error: rank {self.world.rank} saw no progress for "
                    f"{idle:.0f} s (a rank died or hangs); ending the job{self._said()}",
                    code=2,
                )

    def _said(self) -> str:
        """:attr:`last_words`, given :data:`GRACE` seconds: on a GPU rank, reading the
        parameters back may wait behind the stuck collective on the same stream."""
        if self.last_words is None:
            return ""
        said: list[str] = []

        def speak() -> None:
            try:
                said.append(f"; {self.last_words()}")  # type: ignore[misc]
            except Exception as exc:  # the job ends anyway: say why nothing was kept
                said.append(f"; no checkpoint could be written ({type(exc).__name__}: "
                            f"{first_line(exc)})")  # fmt: skip

        worker = threading.Thread(target=speak, name="mlp-xp-last-words", daemon=True)
        worker.start()
        worker.join(self.GRACE / 2)
        if said:
            return said[0]
        return f"; no checkpoint: writing it did not finish in {self.GRACE / 2:.0f} s"


class LocalWorld(World):
    """A world of one process, without MPI (``--stream`` on its own): collectives do nothing."""

    def __init__(self):
        self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
        self.collectives = 0
        self._stop = False

    def allreduce(self, buffer, backend) -> None:
        self.collectives += 1

    def broadcast(self, buffer, backend) -> None:
        pass

    def gather(self, value) -> list:
        return [value]

    def vote(self, stop: bool) -> bool:
        return stop

    def finish_vote(self) -> bool:
        return False

    def barrier(self) -> None:
        pass

    def abort(self, message: str, code: int = 2) -> None:
        print(message, file=sys.stderr, flush=True)
        os._exit(code)
