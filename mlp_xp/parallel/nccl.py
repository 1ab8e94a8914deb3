"""The GPU ranks' collectives: NCCL through CuPy (``cupy.cuda.nccl``), no host round trip.

The communicator is made once, at the first collective (the broadcast of rank 0's
initial parameters): every rank says which GPU of which machine it drives, so two ranks
on one GPU are refused with one line (NCCL needs one GPU per rank); rank 0 draws NCCL's
unique id, MPI broadcasts it (the rendezvous comes from the launcher's communicator), and
every rank joins with its rank, its GPU current.

:meth:`NcclCommunicator.allreduce` sums a flat CuPy buffer in place on the current
stream -- one NCCL call on the buffer's device pointer, nothing copied to the host, no
synchronisation (the next kernel on the stream waits for it, as for any other). Nothing
is overlapped with compute: the gradient is complete before the call and the update
reads the sum after it, in stream order.

Without the NCCL library (CuPy's wheels do not bring it), ``--distributed`` on GPUs is
one line naming the package that does.
"""

from __future__ import annotations

import socket

from .errors import AgreedError

__all__ = ["NcclCommunicator", "NCCL_FIX"]

#: How to get the NCCL library CuPy loads (its wheels, like CuPy's, match the CUDA major).
NCCL_FIX = 'install it with: pip install ".[nccl]" (CUDA 12) or ".[nccl-cuda13]" (CUDA 13)'


def _nccl_module():
    """CuPy's NCCL module, or None where CuPy cannot load the library."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    if not getattr(nccl, "available", True) or not hasattr(nccl, "NcclCommunicator"):
        return None
    return nccl


def _physical_id(backend) -> str:
    """The GPU's PCI bus id: the same device whatever number a rank's view gives it."""
    try:
        return str(backend.cupy.cuda.Device(backend.index).pci_bus_id)
    except Exception:  # no bus id to read: the number is what there is
        return f"gpu:{backend.index}"


class NcclCommunicator:
    """NCCL over the ranks of ``world``, on ``backend``'s GPU.

    Every check is made on values gathered from every rank, so every rank refuses
    together (:class:`AgreedError`: one line, from rank 0).
    """

    def __init__(self, world, backend):
        nccl = _nccl_module()
        self.nccl, self.backend = nccl, backend
        host = socket.gethostname()
        ranks = world.gather((nccl is not None, host, _physical_id(backend), backend.index))
        missing = [r for r, (ok, *_) in enumerate(ranks) if not ok]
        if missing:
            raise AgreedError(
                f"GPU ranks sum their gradients with NCCL, which CuPy cannot load on rank "
                f"{missing[0]} ({ranks[missing[0]][1]}); {NCCL_FIX}"
            )
        places = [(host, bus) for _, host, bus, _ in ranks]
        for r, place in enumerate(places):
            first = places.index(place)
            if first != r:
                raise AgreedError(
                    f"ranks {first} and {r} both use gpu:{ranks[r][3]} ({place[1]}) on "
                    f"{place[0]}; NCCL needs one GPU per rank: pass --device gpu (each rank "
                    "takes the GPU of its local rank) and start at most as many ranks per "
                    "machine as it has GPUs"
                )
        assert nccl is not None
        uid = nccl.get_unique_id() if world.rank == 0 else None
        uid = world.comm.bcast(uid, root=0)
        with backend.scope():
            self.comm = nccl.NcclCommunicator(world.size, uid, world.rank)
        self.types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def _args(self, buffer):
        stream = self.backend.cupy.cuda.get_current_stream().ptr
        return buffer.data.ptr, buffer.size, self.types[str(buffer.dtype)], stream

    def allreduce(self, buffer) -> None:
        """Sum ``buffer`` over the ranks, in place (one ``ncclAllReduce``)."""
        with self.backend.scope():
            ptr, count, dtype, stream = self._args(buffer)
            self.comm.allReduce(ptr, ptr, count, dtype, self.nccl.NCCL_SUM, stream)

    def broadcast(self, buffer) -> None:
        """Overwrite ``buffer`` with rank 0's (one ``ncclBcast``)."""
        with self.backend.scope():
            ptr, count, dtype, stream = self._args(buffer)
            self.comm.bcast(ptr, count, dtype, 0, stream)
