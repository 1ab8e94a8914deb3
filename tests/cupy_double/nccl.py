"""``cupy.cuda.nccl`` of the double: NCCL's communicator, its collectives carried by MPI.

Real NCCL joins one process per GPU through a unique id and runs each collective as a
kernel on a stream, over the GPUs' own links. The double keeps that contract, and counts:

- :func:`get_unique_id` is 128 random bytes (CuPy 14 returns ``bytes``);
- :class:`NcclCommunicator` ``(nranks, uid, rank)`` is collective over the processes of an
  ``mpiexec`` job (the only way the double's ranks meet; ``nranks`` must be the job's
  size). It binds the communicator to the current device and refuses ranks that joined
  with different ids or that share one GPU, where real NCCL hangs or fails with
  ``ncclInvalidUsage``;
- :meth:`~NcclCommunicator.allReduce`, :meth:`~NcclCommunicator.bcast` and
  :meth:`~NcclCommunicator.broadcast` take raw pointers, as CuPy's do. Each pointer is
  resolved to the device array it points into (:func:`.cuda.resolve`), which must live on
  the communicator's device; the data is combined through MPI and the call is counted as
  one launch and one collective -- never as a sync or a host copy, as on a GPU it is a
  kernel on the stream. While a stream captures a graph it is recorded like any kernel.

The fault ``nccl`` imitates a CuPy that cannot load ``libnccl.so.2``: ``available`` is
False and the communicator's names are missing, as in CuPy.
"""

from __future__ import annotations

import os
import socket

import numpy as np

from ._state import STATE, fault, launched

NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = 0, 1, 2, 3, 4
NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64 = 0, 1, 2, 3, 4, 5
NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
NCCL_CHAR, NCCL_INT, NCCL_HALF, NCCL_FLOAT, NCCL_DOUBLE = 0, 2, 6, 7, 8

_DTYPES = {
    NCCL_INT8: np.int8,
    NCCL_UINT8: np.uint8,
    NCCL_INT32: np.int32,
    NCCL_UINT32: np.uint32,
    NCCL_INT64: np.int64,
    NCCL_UINT64: np.uint64,
    NCCL_FLOAT16: np.float16,
    NCCL_FLOAT32: np.float32,
    NCCL_FLOAT64: np.float64,
}
_MPI_OPS = {NCCL_SUM: "SUM", NCCL_PROD: "PROD", NCCL_MAX: "MAX", NCCL_MIN: "MIN", NCCL_AVG: "SUM"}
UNIQUE_ID_BYTES = 128

#: Every communicator made in this process, for tests to inspect (not a CuPy name).
COMMUNICATORS: list = []


class NcclError(RuntimeError):
    """CuPy's ``cupy_backends.cuda.libs.nccl.NcclError``."""


NcclError.__module__ = "cupy_backends.cuda.libs.nccl"


def _get_unique_id() -> bytes:
    return os.urandom(UNIQUE_ID_BYTES)


class _NcclCommunicator:
    """One rank's communicator, on the device current when it was made."""

    def __init__(self, ndev: int, commId: bytes, rank: int, config=None):
        from mpi4py import MPI

        if len(commId) != UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId)} != {UNIQUE_ID_BYTES}.")
        self._MPI, self._device = MPI, STATE.device
        if MPI.COMM_WORLD.Get_size() != ndev:
            raise NcclError(
                f"NCCL_ERROR_INVALID_ARGUMENT: the double's communicator spans the whole "
                f"mpiexec job ({MPI.COMM_WORLD.Get_size()} processes), not {ndev} ranks"
            )
        self._comm = MPI.COMM_WORLD.Dup()
        everyone = self._comm.allgather((bytes(commId), rank, socket.gethostname(), self._device))
        if len({uid for uid, *_ in everyone}) != 1:
            raise NcclError("NCCL_ERROR_INVALID_USAGE: ranks joined with different unique ids")
        if sorted(r for _, r, *_ in everyone) != list(range(ndev)):
            raise NcclError("NCCL_ERROR_INVALID_USAGE: the ranks are not 0 .. nranks-1, once each")
        places = [(host, device) for _, _, host, device in everyone]
        if len(set(places)) != len(places):
            raise NcclError(
                "NCCL_ERROR_INVALID_USAGE: invalid usage (Duplicate GPU detected: two ranks "
                "on one CUDA device)"
            )
        self._rank, self._size = rank, ndev
        self.calls: list[tuple[str, int, int]] = []  # (collective, count, device), for tests
        COMMUNICATORS.append(self)

    # -- what CuPy's communicator tells ------------------------------------------------
    def device_id(self) -> int:
        return self._device

    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def destroy(self) -> None:
        pass

    def abort(self) -> None:
        pass

    # -- collectives -----------------------------------------------------------------------
    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int,
                  stream: int) -> None:  # fmt: skip
        send, recv = self._find(sendbuf, count, datatype), self._find(recvbuf, count, datatype)
        mpi_op = getattr(self._MPI, _MPI_OPS[op])

        def work():
            source = self._MPI.IN_PLACE if sendbuf == recvbuf else send
            self._comm.Allreduce(source, recv, op=mpi_op)
            if op == NCCL_AVG:
                recv[...] = recv / self._size  # NCCL averages floats; integers truncate

        self._launch("allReduce", count, work, stream)

    def bcast(self, buff: int, count: int, datatype: int, root: int, stream: int) -> None:
        buffer = self._find(buff, count, datatype)
        self._launch("bcast", count, lambda: self._comm.Bcast(buffer, root=root), stream)

    def broadcast(self, sendbuff: int, recvbuff: int, count: int, datatype: int, root: int,
                  stream: int) -> None:  # fmt: skip
        send, recv = self._find(sendbuff, count, datatype), self._find(recvbuff, count, datatype)

        def work():
            if self._rank == root:
                recv[...] = send
            self._comm.Bcast(recv, root=root)

        self._launch("broadcast", count, work, stream)

    # -- the double's plumbing ------------------------------------------------------------
    def _find(self, ptr: int, count: int, datatype: int) -> np.ndarray:
        from .cuda import resolve

        if not isinstance(ptr, int) or datatype not in _DTYPES:
            raise TypeError(f"a raw device pointer (int) and an NCCL data type, not {ptr!r}")
        found = resolve(ptr, count, np.dtype(_DTYPES[datatype]))
        if found is None:
            raise NcclError(
                f"NCCL_ERROR_UNHANDLED_CUDA_ERROR: {count} elements at {ptr:#x} are not in "
                "device memory (pass an array's .data.ptr, with its size and data type)"
            )
        array, flat = found
        if array._device != self._device:
            raise NcclError(
                f"NCCL_ERROR_INVALID_USAGE: a buffer on device {array._device} given to the "
                f"communicator of device {self._device}"
            )
        return flat

    def _launch(self, name: str, count: int, work, stream: int) -> None:
        if not isinstance(stream, int):
            raise TypeError(f"stream must be a stream's .ptr (an int), not {stream!r}")
        capturing = STATE.capturing
        if capturing is not None and not STATE.replaying:
            capturing._capture.append(work)  # runs, uncounted, when the graph is launched
            return
        work()
        launched(1)
        if STATE.counting:
            STATE.counts.collectives += 1
            self.calls.append((name, count, self._device))


_PRESENT = {
    "NcclCommunicator": _NcclCommunicator,
    "get_unique_id": _get_unique_id,
}


def __getattr__(name: str):
    """``available`` and the communicator's names, absent under the ``nccl`` fault."""
    if name == "available":
        return not fault("nccl")
    if name in _PRESENT and not fault("nccl"):
        return _PRESENT[name]
    raise AttributeError(f"module 'cupy.cuda.nccl' has no attribute {name!r}")
