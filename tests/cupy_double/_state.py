"""What the double counts and the device state it imitates (current device, streams, capture)."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field


@dataclass
class Counts:
    """What a real GPU would have been asked to do.

    ``launches``: kernel launches (elementwise, reductions, cuBLAS calls, memsets, device
    copies; a fused kernel is one; a graph launch is one). ``syncs``: blocking
    device-to-host waits (``float``/``int``/``bool``/``item``/``get``/``asnumpy``, boolean
    masks, ``synchronize``). ``h2d``: host-to-device copies. ``graph_launches``: CUDA graph
    replays. ``collectives``: NCCL collectives (each is also one launch). ``allocations``:
    new device arrays per device id. ``capture_allocations``: arrays allocated while a
    stream was capturing.
    """

    launches: int = 0
    syncs: int = 0
    h2d: int = 0
    d2h: int = 0
    graph_launches: int = 0
    collectives: int = 0
    allocations: dict = field(default_factory=dict)
    capture_allocations: int = 0

    def copy(self) -> Counts:
        return Counts(
            self.launches,
            self.syncs,
            self.h2d,
            self.d2h,
            self.graph_launches,
            self.collectives,
            dict(self.allocations),
            self.capture_allocations,
        )

    def __sub__(self, other: Counts) -> Counts:
        devices = set(self.allocations) | set(other.allocations)
        return Counts(
            self.launches - other.launches,
            self.syncs - other.syncs,
            self.h2d - other.h2d,
            self.d2h - other.d2h,
            self.graph_launches - other.graph_launches,
            self.collectives - other.collectives,
            {d: self.allocations.get(d, 0) - other.allocations.get(d, 0) for d in devices},
            self.capture_allocations - other.capture_allocations,
        )

    def as_dict(self) -> dict:
        return {
            "launches": self.launches,
            "syncs": self.syncs,
            "h2d": self.h2d,
            "d2h": self.d2h,
            "graph_launches": self.graph_launches,
            "collectives": self.collectives,
        }


CONTEXTS: set[int] = set()
GENERATION = [0]  # how many times the double was installed afresh (see Block)


class State(threading.local):
    """One per thread, like CUDA's current device and stream."""

    def __init__(self):
        self.counts = Counts()
        self.n_devices = 2
        self.memory = 16 << 30  # bytes per simulated device, unless ``totals`` says otherwise
        self.totals: dict[int, int] = {}  # device -> its memory, where it differs
        self.device_stack: list[int] = []
        self.stream_stack: list = []
        self.fusing = 0  # inside a fused kernel: nothing is counted, few ops are allowed
        self.fused_reductions = 0
        self.fused_kernel = ""  # the name of the fused kernel whose body runs now
        self.retyped: list[tuple] = []  # (kernel, operation, CuPy's loop, NumPy's loop)
        self.replaying = 0  # a graph is being replayed: its thunks are not counted
        self.faults: set[str] = set()
        self.used: dict[int, int] = {}  # device -> bytes held by live device arrays
        self.held: dict[int, int] = {}  # device -> bytes the memory pool holds (its high mark)

    @property
    def contexts(self) -> set[int]:
        """Devices with a CUDA context in this process (contexts are per process, not per
        thread): made current (cudaSetDevice creates the primary context), given work, a
        stream or a memory query; counting the devices makes none (cudaGetDeviceCount)."""
        return CONTEXTS

    @property
    def device(self) -> int:
        return self.device_stack[-1] if self.device_stack else 0

    @property
    def capturing(self):
        """The stream capturing work launched now, or None."""
        stream = self.stream_stack[-1] if self.stream_stack else None
        return stream if stream is not None and stream._capture is not None else None

    def total(self, device: int) -> int:
        """The memory of ``device`` (``totalGlobalMem``)."""
        return self.totals.get(device, self.memory)

    def free(self, device: int) -> int:
        """What cudaMemGetInfo says is free on ``device``: its memory less what CuPy's pool
        holds there -- the pool keeps freed blocks for reuse (cupy/cuda/memory.pyx,
        SingleDeviceMemoryPool; ``free_all_blocks`` gives them back)."""
        return self.total(device) - self.held.get(device, 0)

    def reset(self, n_devices: int = 2) -> None:
        CONTEXTS.clear()
        GENERATION[0] += 1
        self.__init__()
        self.n_devices = n_devices

    @contextlib.contextmanager
    def quiet(self):
        """Run double internals (fused bodies, graph replays) without counting them."""
        self.replaying += 1
        try:
            yield
        finally:
            self.replaying -= 1

    @property
    def counting(self) -> bool:
        return not (self.fusing or self.replaying)


STATE = State()


class CaptureError(RuntimeError):
    """What CUDA answers to a synchronous operation on a capturing stream."""


def launched(n: int = 1) -> None:
    STATE.contexts.add(STATE.device)
    if STATE.counting:
        STATE.counts.launches += n


def synced(what: str) -> None:
    if STATE.fusing:
        raise TypeError(f"{what} is not allowed inside a fused kernel")
    if STATE.capturing is not None and not STATE.replaying:
        raise CaptureError(
            f"cudaErrorStreamCaptureUnsupported: {what} is not permitted when stream is capturing"
        )
    if STATE.counting:
        STATE.counts.syncs += 1


def copied_to_device() -> None:
    STATE.contexts.add(STATE.device)
    if STATE.capturing is not None and not STATE.replaying:
        raise CaptureError(
            "cudaErrorStreamCaptureUnsupported: a synchronous host-to-device copy is not "
            "permitted when stream is capturing"
        )
    if STATE.counting:
        STATE.counts.h2d += 1


def copied_to_host() -> None:
    synced("a device-to-host copy")
    if STATE.counting:
        STATE.counts.d2h += 1


def check_memory(nbytes: int, device: int | None = None) -> None:
    device = STATE.device if device is None else device
    if nbytes > STATE.total(device) - STATE.used.get(device, 0):
        from .cuda import OutOfMemoryError

        raise OutOfMemoryError(nbytes, STATE.total(device))


class Block:
    """A block of device memory from CuPy's pool, held by an array (or a temporary).

    One allocated while a stream captures is remembered by that capture: a graph made from
    it writes and reads the block on every replay, while CuPy's ``Graph`` keeps no reference
    to it (cupy/cuda/graph.pyx, ``Graph`` holds only the graph, its executable and host
    callbacks; cupy/cuda/stream.pyx, ``Stream.end_capture`` hands over nothing else). So
    once the block goes back to the pool, a replay uses memory the pool may have given to
    another array: :meth:`cuda.Graph.launch` refuses that in the double.
    """

    __slots__ = ("device", "nbytes", "freed", "generation")

    def __init__(self, device: int, nbytes: int):
        self.device, self.nbytes, self.freed = device, nbytes, False
        self.generation = GENERATION[0]  # an array outliving its double frees nothing after


def allocated(device: int, nbytes: int) -> Block:
    """A block from the pool of ``device`` (counted, and remembered by a capture)."""
    STATE.contexts.add(device)
    check_memory(nbytes, device)
    STATE.used[device] = STATE.used.get(device, 0) + nbytes
    STATE.held[device] = max(STATE.held.get(device, 0), STATE.used[device])
    block = Block(device, nbytes)
    if STATE.fusing or STATE.replaying:
        return block
    counts = STATE.counts
    counts.allocations[device] = counts.allocations.get(device, 0) + 1
    stream = STATE.capturing
    if stream is not None:
        counts.capture_allocations += 1
        stream._blocks.append(block)
    return block


def freed(block: Block) -> None:
    """``block`` goes back to its device's pool (CuPy's pool keeps it for reuse)."""
    if not block.freed:
        block.freed = True
        if block.generation == GENERATION[0]:
            STATE.used[block.device] = STATE.used.get(block.device, 0) - block.nbytes


def fault(name: str) -> bool:
    return name in STATE.faults
