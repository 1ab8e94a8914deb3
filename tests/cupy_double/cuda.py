"""``cupy.cuda`` of the double: devices, the runtime, streams, events, CUDA graphs, memory."""

from __future__ import annotations

import types
import weakref

from ._state import STATE, fault, launched, synced


class GraphMemoryError(RuntimeError):
    """The double's own error: a graph replay would use a block the pool took back. On a
    GPU nothing is raised; the replay corrupts whatever the pool gave that memory to."""


class CUDARuntimeError(RuntimeError):
    """CuPy's runtime error (``cupy_backends.cuda.api.runtime.CUDARuntimeError``)."""


CUDARuntimeError.__module__ = "cupy_backends.cuda.api.runtime"


class OutOfMemoryError(MemoryError):
    def __init__(self, size, total):
        super().__init__(
            f"Out of memory allocating {size:,} bytes (allocated so far: 0 bytes, limit set "
            f"to: {total:,} bytes)."
        )


OutOfMemoryError.__module__ = "cupy.cuda.memory"


def _driver_check():
    if fault("driver"):
        raise CUDARuntimeError(
            "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA "
            "runtime version"
        )


def _count() -> int:
    _driver_check()
    return 0 if fault("no-device") else STATE.n_devices


class Device:
    """A simulated CUDA device; ``with Device(1):`` makes it current."""

    def __init__(self, device=None):
        if isinstance(device, Device):
            device = device.id
        self.id = STATE.device if device is None else int(device)
        if not 0 <= self.id < _count():
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    # cupy/cuda/device.pyx, Device.__enter__: push getDevice(), setDevice(id) if it
    # differs; __exit__: setDevice(the pushed one); use(): setDevice(id). cudaSetDevice
    # creates the device's primary context, so leaving a block makes one on the device
    # current before it (GPU 0 in a process that never chose one)
    def __enter__(self):
        before = STATE.device
        STATE.device_stack.append(self.id)
        if self.id != before:
            STATE.contexts.add(self.id)
        return self

    def __exit__(self, *exc):
        STATE.device_stack.pop()
        STATE.contexts.add(STATE.device)

    def use(self):
        if STATE.device_stack:
            STATE.device_stack[-1] = self.id
        else:
            STATE.device_stack.append(self.id)
        STATE.contexts.add(self.id)

    @property
    def compute_capability(self) -> str:
        return "90"

    @property
    def pci_bus_id(self) -> str:
        return f"0000:{0x18 + self.id:02X}:00.0"

    @property
    def mem_info(self):
        """cupy/cuda/device.pyx, ``Device.mem_info``: sets this device current, reads
        cudaMemGetInfo and sets the previous one current again (a context on both)."""
        STATE.contexts.update((self.id, STATE.device))
        return (STATE.free(self.id), STATE.total(self.id))

    def synchronize(self):
        synced("Device.synchronize()")

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _mem_info() -> tuple[int, int]:
    """cudaMemGetInfo (cupy_backends/cuda/api/runtime.pyx, ``memGetInfo``): the free and
    total memory of the *current* device; it makes that device's context."""
    STATE.contexts.add(STATE.device)
    return (STATE.free(STATE.device), STATE.total(STATE.device))


def _properties(i: int) -> dict:
    if not 0 <= i < _count():
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
    return {
        "name": f"Simulated GPU {i}".encode(),
        "totalGlobalMem": STATE.total(i),
        "major": 9,
        "minor": 0,
        "multiProcessorCount": 132,
    }


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(f"cupy.cuda.{name}")
    module.__dict__.update(attrs)
    return module


runtime = _module(
    "runtime",
    CUDARuntimeError=CUDARuntimeError,
    getDeviceCount=_count,
    getDeviceProperties=_properties,
    getDevice=lambda: STATE.device,
    runtimeGetVersion=lambda: 12080,
    driverGetVersion=lambda: (_driver_check(), 12080)[1],
    memGetInfo=lambda: _mem_info(),
    streamCaptureModeRelaxed=2,
)


class Graph:
    """A captured sequence of work; ``launch()`` replays it as one launch.

    ``_blocks`` are the blocks allocated while it was captured: the graph's kernels read
    and write them at fixed addresses, but CuPy's ``Graph`` holds no reference to them
    (cupy/cuda/graph.pyx, ``Graph._init`` keeps the graph, its executable and the host
    callbacks only), so the pool may take one back and hand it to another array. A replay
    after that reads and writes freed memory on a GPU, silently; the double refuses it.
    """

    def __init__(self, work: list, blocks: list):
        self._work = work
        self._blocks = blocks

    def launch(self, stream=None):
        lost = [b for b in self._blocks if b.freed]
        if lost:
            raise GraphMemoryError(
                f"the CUDA graph uses {len(lost)} block(s) ({sum(b.nbytes for b in lost):,} "
                "bytes) allocated while it was captured that went back to the memory pool "
                "since; a replay would read and write memory the pool may give to other arrays"
            )
        launched(1)
        if STATE.counting:
            STATE.counts.graph_launches += 1
        with STATE.quiet():
            for step in self._work:
                step()

    def upload(self, stream=None):
        pass


graph = _module("graph", Graph=Graph)


class Event:
    def record(self, stream=None):
        return self

    def synchronize(self):
        synced("Event.synchronize()")


class Stream:
    """A stream; work is launched on the innermost ``with stream:``."""

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int | None = None):
        self.ptr = 0 if null else id(self)
        self._capture = None
        self._blocks: list = []  # blocks allocated while it captures (see Graph)
        # a stream belongs to the device current when it is made; the null stream to none
        # (cupy/cuda/stream.pyx, Stream.__init__: device_id = runtime.getDevice())
        self.device_id = -1 if null else STATE.device
        if not null:
            STATE.contexts.add(self.device_id)

    def _check_device(self) -> None:
        """cupy/cuda/stream.pyx, check_stream_device_match (from __enter__ and use)."""
        if self.device_id not in (-1, STATE.device):
            raise RuntimeError(
                f"The device that the stream is created on ({self.device_id}) does not "
                f"match with the current device ({STATE.device})"
            )

    def __enter__(self):
        self._check_device()
        STATE.stream_stack.append(self)
        return self

    def __exit__(self, *exc):
        STATE.stream_stack.pop()

    def use(self):
        self._check_device()
        STATE.stream_stack.append(self)
        return self

    def synchronize(self):
        synced("Stream.synchronize()")

    def begin_capture(self, mode=None):
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        self._capture, self._blocks = [], []

    def is_capturing(self) -> bool:
        return self._capture is not None

    def end_capture(self) -> Graph:
        """cupy/cuda/stream.pyx, ``Stream.end_capture``: the graph gets the captured work
        (and host callbacks) only -- not the blocks allocated meanwhile."""
        work, self._capture = self._capture, None
        blocks, self._blocks = self._blocks, []
        return Graph(work, blocks)

    def record(self, event=None):
        return event or Event()

    def wait_event(self, event):
        pass


Stream.null = Stream(null=True)


def get_current_stream():
    return STATE.stream_stack[-1] if STATE.stream_stack else Stream.null


class MemoryPointer:
    """``ndarray.data``: ``ptr`` is the address of the array's first element.

    In the double that is the NumPy buffer's real address, and every pointer handed out is
    remembered (weakly) so that :mod:`.nccl` can find which device array a raw pointer, a
    count and a data type denote -- and refuse one that points into no device array, as a
    real GPU would fault on it.
    """

    def __init__(self, array):
        self.ptr = int(array._a.__array_interface__["data"][0])
        self.device_id = array._device
        for key in [k for k, ref in _HANDED_OUT.items() if ref() is None]:
            del _HANDED_OUT[key]
        _HANDED_OUT[id(array)] = weakref.ref(array)

    @property
    def device(self):
        return Device(self.device_id)


_HANDED_OUT: dict[int, weakref.ref] = {}  # id(array) -> the array whose pointer was handed out


def resolve(ptr: int, count: int, dtype):
    """The (device array, flat NumPy view) of ``count`` elements of ``dtype`` at ``ptr``.

    ``None`` when the range lies in no live device array whose pointer was handed out.
    """
    for ref in list(_HANDED_OUT.values()):
        array = ref()
        if array is None or array.dtype != dtype or not array._a.flags.c_contiguous:
            continue
        start = int(array._a.__array_interface__["data"][0])
        end = start + array._a.nbytes
        if start <= ptr and ptr + count * array.itemsize <= end:
            offset = (ptr - start) // array.itemsize
            return array, array._a.reshape(-1)[offset : offset + count]
    return None


class MemoryPool:
    """CuPy's default pool: one pool per device, each method for the current device's
    (cupy/cuda/memory.pyx, ``MemoryPool.used_bytes`` etc. call ``self.device_pool()``)."""

    def used_bytes(self) -> int:
        return STATE.used.get(STATE.device, 0)

    def total_bytes(self) -> int:
        return STATE.held.get(STATE.device, 0)

    def free_all_blocks(self) -> None:
        STATE.held[STATE.device] = STATE.used.get(STATE.device, 0)


memory = _module(
    "memory", OutOfMemoryError=OutOfMemoryError, MemoryPool=MemoryPool, MemoryPointer=MemoryPointer
)
device = _module("device", Device=Device)
stream = _module("stream", Stream=Stream, Event=Event, get_current_stream=get_current_stream)

from . import nccl  # noqa: E402  (it uses the names above)

SUBMODULES = {"runtime": runtime, "graph": graph, "memory": memory, "device": device,
              "stream": stream, "nccl": nccl}  # fmt: skip
