"""Making the next batch's inputs on a second CPU thread while the current step computes.

On the CPU a step is two kinds of work that need not wait for each other: the inputs of
a batch (gather the rows, scale the pixels, distort them) and the network's forward,
backward and update. NumPy releases the GIL inside its loops, so :class:`Lookahead`
makes step ``s + 1``'s inputs on one worker thread while step ``s`` runs, the way a
data loader's workers do; the augmentation then costs wall time only where it takes
longer than the step it hides behind.

Nothing random happens on the worker: a batch's rows and distortions are fixed by the
epoch plan (:mod:`mlp_xp.train.plan`), so the inputs are bit for bit those the step
would have made itself. Each pending batch writes into its own set of buffers (the step
alternates two), so the worker never overwrites inputs in use. An error on the worker
is raised where the step takes the batch; a batch made ahead but never taken (the run
stopped, the epoch ended) is waited for and dropped.

It pays only where a core is free while the step computes: :func:`spare_core` says so
when the BLAS threads, limited by ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` (set before the program starts, as ``mlp-xp bench --ranks`` sets them
for its ranks and as the benchmark commands in the docs do), leave a core of this
process's for the worker. Where BLAS already uses every core, the worker would only
compete with it, and the step makes its inputs itself.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["Lookahead", "spare_core"]

#: The environment variables that set the BLAS/OpenMP thread counts NumPy's BLAS uses.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def spare_core(processes: int = 1) -> bool:
    """Whether ``processes`` such processes on this machine (the ranks of a data-parallel
    run), each with its BLAS threads and one worker, fit the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    for name in BLAS_THREAD_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return (int(value) + 1) * processes <= cores
    return False


class Lookahead:
    """One batch made ahead at a time, on one worker thread (made at first use)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[Any, Future] | None = None

    def take(self, key: Any, make: Callable[[], Any]) -> Any:
        """The batch ``key``: the one made ahead if it is that one, else ``make()`` now."""
        pending, self._pending = self._pending, None
        if pending is not None:
            made_key, future = pending
            if made_key == key:
                return future.result()
            future.exception()  # another batch: wait for it, so its buffers are free
        return make()

    def ahead(self, key: Any, make: Callable[[], Any]) -> None:
        """Start making batch ``key`` (``make()``) on the worker."""
        self.settle()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mlp-xp-inputs")
            weakref.finalize(self, self._pool.shutdown, wait=False)
        self._pending = (key, self._pool.submit(make))

    def settle(self) -> None:
        """Wait for a batch made ahead and drop it (its error too: it was never used)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].exception()
