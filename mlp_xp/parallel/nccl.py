"""The GPU ranks' collectives: NCCL through CuPy (``cupy.cuda.nccl``), no host round trip.

The communicator is made once: rank 0 draws NCCL's unique id, MPI broadcasts it (the
rendezvous comes from the launcher's communicator), and every rank joins with its rank.
:meth:`NcclCommunicator.allreduce` sums a flat CuPy buffer in place on the current
stream -- one NCCL call, nothing copied to the host, no synchronisation (the next
kernel on the stream waits for it, as any other). Nothing is overlapped with compute.

Not yet run on real GPUs: the calls follow CuPy's documented ``NcclCommunicator`` API.
"""

from __future__ import annotations

__all__ = ["NcclCommunicator"]


class NcclCommunicator:
    """NCCL over the ranks of ``world``, on ``backend``'s GPU."""

    def __init__(self, world, backend):
        from cupy.cuda import nccl

        self.nccl, self.backend = nccl, backend
        uid = nccl.get_unique_id() if world.rank == 0 else None
        uid = world.comm.bcast(uid, root=0)
        with backend.scope():
            self.comm = nccl.NcclCommunicator(world.size, uid, world.rank)
        self.types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def _args(self, buffer):
        stream = self.backend.cupy.cuda.get_current_stream().ptr
        return buffer.data.ptr, buffer.size, self.types[str(buffer.dtype)], stream

    def allreduce(self, buffer) -> None:
        ptr, count, dtype, stream = self._args(buffer)
        with self.backend.scope():
            self.comm.allReduce(ptr, ptr, count, dtype, self.nccl.NCCL_SUM, stream)

    def broadcast(self, buffer) -> None:
        ptr, count, dtype, stream = self._args(buffer)
        with self.backend.scope():
            self.comm.bcast(ptr, count, dtype, 0, stream)
