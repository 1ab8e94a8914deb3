"""The counting CuPy double imitates the CuPy 14 behaviour the package relies on."""

import contextlib
import re

import numpy as np
import pytest

from .conftest import simulated_gpu
from .cupy_double import counting


@pytest.fixture
def cp(request):
    return simulated_gpu(request)


@pytest.fixture
def real_cupy(request):
    """The real CuPy module (no GPU needed), skipped where it is not installed."""
    from .test_gpu import import_real_cupy

    return import_real_cupy(request)


@pytest.fixture
def xp(cp):
    import array_api_compat.cupy as xp

    return xp


def test_device_arrays_refuse_implicit_conversion(cp):
    a = cp.arange(6, dtype=cp.float32).reshape(2, 3)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="2-d device array"):
        float(a)
    with counting() as c:
        assert float(cp.sum(a)) == 15.0 and int(a[1, 2]) == 5 and bool(a[0, 1])
    assert c.counts.syncs == 3


def test_host_arrays_mixed_into_device_operations_raise(cp):
    a = cp.zeros(3, dtype=cp.float32)
    for bad in (lambda: a + np.ones(3), lambda: np.ones(3) * a, lambda: cp.maximum(a, np.ones(3))):
        with pytest.raises(TypeError, match="Unsupported type"):
            bad()
    with pytest.raises(TypeError, match="Unsupported type"):
        a[...] = np.ones(3)
    assert float(cp.sum(a + np.float32(2))) == 6.0  # NumPy scalars are fine, as in CuPy


def test_reductions_give_0d_device_arrays_and_views_are_free(cp):
    a = cp.ones((4, 5), dtype=cp.float32)
    with counting() as c:
        total, rows = cp.sum(a), a.max(axis=1)
        b = a[1:3].reshape(-1)
    assert isinstance(total, cp.ndarray) and total.ndim == 0 and rows.shape == (4,)
    assert c.counts.launches == 2 and c.counts.syncs == 0  # the view and the reshape are free
    assert b.shape == (10,)


def test_boolean_masks_synchronise(cp):
    a = cp.arange(6, dtype=cp.float32)
    with counting() as c:
        a[a > 2]
    assert c.counts.syncs == 1
    with counting() as c:
        a[a > 2] = 0.0
    assert c.counts.syncs == 1


def test_the_compat_clip_trap_is_visible(xp):
    """array-api-compat's clip for CuPy masks (syncs) and copies its bounds to the device."""
    a = xp.reshape(xp.arange(6, dtype=xp.float32), (2, 3))
    with counting() as c:
        xp.clip(a, 0.0, 1.0)
    assert c.counts.syncs >= 2 and c.counts.h2d >= 2
    with counting() as c:
        xp.minimum(xp.maximum(a, 0.0), 1.0)
    assert c.counts.as_dict() == {
        "launches": 2,
        "syncs": 0,
        "h2d": 0,
        "d2h": 0,
        "graph_launches": 0,
        "collectives": 0,
    }


def test_transfers_are_counted(cp):
    with counting() as c:
        a = cp.asarray(np.arange(3.0))
        a.get()
        cp.asnumpy(a)
        a.set(np.zeros(3))
        cp.cuda.get_current_stream().synchronize()
    assert (c.counts.h2d, c.counts.d2h, c.counts.syncs) == (2, 2, 3)


def test_concatenate_costs_what_cupy_does(cp):
    parts = [cp.ones(4, dtype=cp.float32) for _ in range(9)]
    with counting() as c:
        cp.concatenate(parts[:6])
    assert (c.counts.launches, c.counts.h2d) == (6, 0)  # one copy kernel per array
    with counting() as c:
        cp.concatenate(parts)
    assert (c.counts.launches, c.counts.h2d) == (1, 1)  # the pointers go to the device first


def test_arrays_live_on_the_device_current_when_made(cp):
    with cp.cuda.Device(1):
        b = cp.zeros(3, dtype=cp.float32)
        assert b.device.id == 1
        b + 1.0
    with pytest.raises(ValueError, match="resides \\(1\\).*current device \\(0\\)"):
        b + 1.0
    assert cp.cuda.runtime.getDeviceCount() == 2
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="invalid device"):
        cp.cuda.Device(2)


def test_fuse_is_one_launch_and_refuses_what_cupy_fuse_cannot_do(cp):
    @cp.fuse()
    def axpy(y, x, a):
        y += a * cp.exp(x)

    x, y = cp.zeros(4, dtype=cp.float32), cp.ones(4, dtype=cp.float32)
    with counting() as c:
        axpy(y, x, 2.0)
    assert c.counts.launches == 1 and float(y.sum()) == 12.0
    for body in (lambda v: v[1:], lambda v: cp.matmul(v, v), lambda v: float(v)):
        with pytest.raises((TypeError, NotImplementedError)):
            cp.fuse(body)(x)
    with pytest.raises(NotImplementedError, match="Multiple reduction"):
        cp.fuse(lambda v: cp.sum(cp.sum(v, axis=0)))(cp.ones((2, 2)))
    with pytest.raises(TypeError, match="Unsupported type"):
        axpy(y, np.zeros(4, np.float32), 2.0)


def test_a_captured_graph_records_work_and_replays_it_as_one_launch(cp):
    x = cp.ones(3, dtype=cp.float32)
    out = cp.zeros(3, dtype=cp.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        cp.multiply(x, 2.0, out)
        x += out
        graph = stream.end_capture()
    assert float(x.sum()) == 3.0 and float(out.sum()) == 0.0  # recorded, not run
    with counting() as c:
        graph.launch()
        graph.launch()
    assert (c.counts.launches, c.counts.graph_launches) == (2, 2)
    np.testing.assert_array_equal(x.get(), 9.0)  # 1 -> 3 -> 9
    with stream:
        stream.begin_capture()
        with pytest.raises(RuntimeError, match="capturing"):
            float(x.sum())
        stream.end_capture()
    with pytest.raises(RuntimeError, match="legacy"):
        cp.cuda.Stream.null.begin_capture()


@pytest.mark.parametrize(
    "fault, trigger, error, match",
    [
        ("driver", lambda cp: cp.cuda.runtime.getDeviceCount(), RuntimeError,
         "InsufficientDriver"),  # CUDARuntimeError
        ("cublas", lambda cp: cp.zeros((2, 2)) @ cp.zeros((2, 2)), ImportError, "libcublas"),
        # kernels compile on first use; cuda-pathfinder's DynamicLibNotFoundError
        ("nvrtc", lambda cp: cp.zeros(2) + 1.0, RuntimeError, "libnvrtc"),
    ],
)  # fmt: skip
def test_a_broken_workstation_fails_the_way_the_real_stack_does(
    request, fault, trigger, error, match
):
    cp = simulated_gpu(request, faults=[fault])
    with pytest.raises(error, match=match):
        trigger(cp)


def test_out_of_device_memory(cp):
    with pytest.raises(MemoryError, match="Out of memory") as info:
        cp.empty(1 << 50, dtype=cp.uint8)
    assert type(info.value).__module__ == "cupy.cuda.memory"


def test_take_wraps_an_index_out_of_range_and_has_no_mode_as_cupy(cp):
    """What CuPy does (the double's ``take`` cites the source): so a label past the last
    class would have paired rows silently on a GPU; the data door refuses it first."""
    a = cp.arange(10.0)
    assert cp.asnumpy(cp.take(a, cp.asarray([3, 10, 12, -1]))).tolist() == [3.0, 0.0, 2.0, 9.0]
    with pytest.raises(TypeError):
        cp.take(a, cp.asarray([1]), mode="raise")


@pytest.mark.gpu
def test_real_cupy_take_wraps_as_the_double_does(real_gpu):
    cupy = real_gpu.cupy
    a = cupy.arange(10.0)
    assert cupy.asnumpy(cupy.take(a, cupy.asarray([3, 10, 12, -1]))).tolist() == [
        3.0,
        0.0,
        2.0,
        9.0,
    ]
    with pytest.raises(TypeError):
        cupy.take(a, cupy.asarray([1]), mode="raise")


def test_a_stream_is_used_only_on_the_device_it_was_made_on_as_in_cupy(cp):
    stream = cp.cuda.Stream(non_blocking=True)  # made with GPU 0 current
    with cp.cuda.Device(1):
        refused = pytest.raises(RuntimeError, match=r"created on \(0\) does not match .* \(1\)")
        with refused, stream:
            pass
        with cp.cuda.Stream(non_blocking=True):  # made on GPU 1, used there
            pass
    with stream:
        pass


def test_setting_a_device_current_makes_its_context_as_cuda_does(cp):
    """Leaving ``with Device(1):`` sets the device before it current again, and
    cudaSetDevice makes that device's context: GPU 0 gets one though nothing ran there.
    Counting the GPUs makes none."""
    from .cupy_double import STATE

    cp.cuda.runtime.getDeviceCount()
    assert STATE.contexts == set()
    with cp.cuda.Device(1):
        cp.zeros(3)
    assert STATE.contexts == {0, 1}
    STATE.contexts.clear()
    cp.cuda.Device(1).use()  # a rank that chose its GPU first
    with cp.cuda.Device(1):
        cp.zeros(3)
    assert STATE.contexts == {1}


@pytest.mark.gpu
def test_real_cupy_refuses_cublas_while_a_stream_captures_as_the_double_does(real_gpu):
    cupy = real_gpu.cupy
    a = cupy.ones((4, 4), dtype=cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(NotImplementedError, match="cuBLAS API during stream capture"):
                a @ a
        finally:
            with contextlib.suppress(Exception):
                stream.end_capture()


@pytest.mark.gpu
def test_real_cupy_uses_a_stream_only_on_its_device_as_the_double_does(real_gpu):
    cupy = real_gpu.cupy
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    stream = cupy.cuda.Stream(non_blocking=True)
    with cupy.cuda.Device(1):
        refused = pytest.raises(RuntimeError, match=r"created on \(0\) does not match")
        with refused, stream:
            pass


def test_cub_reductions_allocate_and_copy_into_out_unless_switched_off_as_in_cupy(cp):
    """cupy/cuda/cub.pyx, device_reduce: a result and a workspace from the pool, and one
    more launch to copy into ``out``; CuPy's own reduction kernel without the accelerator."""
    z = cp.ones((8, 10), dtype=cp.float32)
    s = cp.empty((8, 1), dtype=cp.float32)
    with counting() as on:
        cp.sum(z, axis=1, keepdims=True, out=s)
    assert sum(on.counts.allocations.values()) == 2 and on.counts.launches == 2
    saved = cp._core.get_routine_accelerators()
    cp._core.set_routine_accelerators([])
    try:
        with counting() as off:
            cp.sum(z, axis=1, keepdims=True, out=s)
    finally:
        cp._core.set_routine_accelerators(saved)
    assert sum(off.counts.allocations.values()) == 0 and off.counts.launches == 1


@pytest.mark.gpu
def test_real_cupy_cub_reductions_allocate_unless_switched_off_as_the_double_says(real_gpu):
    cupy = real_gpu.cupy

    class Mallocs(cupy.cuda.MemoryHook):
        name = "mallocs"

        def __init__(self):
            self.n = 0

        def malloc_preprocess(self, **kwargs):
            self.n += 1

    z = cupy.ones((8, 10), dtype=cupy.float32)
    s = cupy.empty((8, 1), dtype=cupy.float32)
    saved = cupy._core.get_routine_accelerators()
    try:
        cupy._core.set_routine_accelerators(["cub"])
        with Mallocs() as on:
            cupy.sum(z, axis=1, keepdims=True, out=s)
        cupy._core.set_routine_accelerators([])
        with Mallocs() as off:
            cupy.sum(z, axis=1, keepdims=True, out=s)
    finally:
        cupy._core.set_routine_accelerators(saved)
    assert on.n >= 1 and off.n == 0


def test_a_graph_that_uses_a_block_the_pool_took_back_refuses_to_replay(cp):
    """CuPy's Graph keeps no reference to the blocks allocated while it was captured
    (cupy/cuda/graph.pyx): one that goes back to the pool is memory a replay still reads
    and writes. The double makes that an error at the replay."""
    from .cupy_double.cuda import GraphMemoryError

    x = cp.ones((4, 8), dtype=cp.float32)
    stream = cp.cuda.Stream(non_blocking=True)

    def captured(body):
        with stream:
            stream.begin_capture()
            kept = body()
            return stream.end_capture(), kept

    graph, y = captured(lambda: x * 2.0)  # a new array, kept alive: fine
    graph.launch()
    np.testing.assert_array_equal(y.get(), 2.0)
    del y  # now its block is back in the pool
    with pytest.raises(GraphMemoryError, match="1 block"):
        graph.launch()
    s = cp.empty((4, 1), dtype=cp.float32)
    with counting() as c:  # CUB's result and workspace are freed inside the capture
        graph, _ = captured(lambda: cp.sum(x, axis=1, keepdims=True, out=s))
    assert c.counts.capture_allocations == 2
    with pytest.raises(GraphMemoryError, match="2 block"):
        graph.launch()
    saved = cp._core.get_routine_accelerators()
    cp._core.set_routine_accelerators([])  # CuPy's own reduction kernel: nothing allocated
    try:
        with counting() as c:
            graph, _ = captured(lambda: cp.sum(x, axis=1, keepdims=True, out=s))
    finally:
        cp._core.set_routine_accelerators(saved)
    assert c.counts.capture_allocations == 0
    graph.launch()
    np.testing.assert_array_equal(s.get(), 8.0)


def test_memory_is_per_device_and_memgetinfo_reads_the_current_one(cp):
    """cudaMemGetInfo answers for the current device (cupy_backends/cuda/api/runtime.pyx,
    memGetInfo); Device.mem_info for its own; what CuPy's pool holds is not free."""
    from .cupy_double import STATE

    STATE.totals[1] = 1 << 30
    assert cp.cuda.runtime.memGetInfo() == (16 << 30, 16 << 30)
    with cp.cuda.Device(1):
        assert cp.cuda.runtime.memGetInfo() == (1 << 30, 1 << 30)
        block = cp.empty(1 << 20, dtype=cp.uint8)
        assert cp.cuda.runtime.memGetInfo()[0] == (1 << 30) - (1 << 20)
        assert cp.get_default_memory_pool().used_bytes() == 1 << 20
        with pytest.raises(MemoryError, match="Out of memory"):
            cp.empty(1 << 30, dtype=cp.uint8)  # fits GPU 0, not GPU 1
        del block
        assert cp.get_default_memory_pool().used_bytes() == 0
        assert cp.cuda.runtime.memGetInfo()[0] == (1 << 30) - (1 << 20)  # the pool keeps it
        cp.get_default_memory_pool().free_all_blocks()
        assert cp.cuda.runtime.memGetInfo()[0] == 1 << 30
    assert cp.cuda.Device(1).mem_info == (1 << 30, 1 << 30)
    assert cp.cuda.runtime.getDeviceProperties(1)["totalGlobalMem"] == 1 << 30


def test_fusion_types_a_python_scalar_by_its_type_as_cupy_does(cp):
    """cupy/_core/fusion.pyx with _kernel.pyx's _guess_routine_from_in_types: inside a
    fused kernel a Python float with no float array beside it takes the first loop that
    holds it, float16: 0.1 arrives as 0.0999755859375. A NumPy scalar of the wanted dtype
    keeps the operation in that dtype. The double notes every operation whose loop differs
    from NumPy's."""
    from .cupy_double import STATE

    hit = cp.asarray(np.array([True, False]))
    out = cp.empty(2, dtype=cp.float32)

    @cp.fuse(kernel_name="bare_scalars")
    def bare(hit, out):
        out[...] = cp.where(hit, 0.1, 0.0)

    @cp.fuse(kernel_name="typed_scalars")
    def typed(hit, out):
        out[...] = cp.where(hit, np.float32(0.1), np.float32(0.0))

    STATE.retyped.clear()
    bare(hit, out)
    assert out.get().tolist() == [float(np.float16(0.1)), 0.0]
    assert STATE.retyped == [("bare_scalars", "where", "?ee->e", "?dd->d")]
    STATE.retyped.clear()
    typed(hit, out)
    assert out.get().tolist() == [float(np.float32(0.1)), 0.0] and STATE.retyped == []
    x = cp.arange(4, dtype=cp.int8)
    cp.fuse(lambda x, s, out: cp.multiply(x, s, out))(x, 0.3, out := cp.empty(4, cp.float16))
    assert out.get()[1] == np.float16(0.3)  # int8 * 0.3 runs in float16 too
    cp.fuse(lambda x, out: cp.true_divide(x, 2, out))(x, out64 := cp.empty(4, cp.float64))
    assert out64.get().tolist() == [0.0, 0.5, 1.0, 1.5]  # integers divide in float64


@pytest.mark.gpu
def test_real_cupy_fusion_types_python_scalars_as_the_double_does(real_cupy):
    """The real fusion front end (it needs CuPy, not a GPU) traces the kernels above."""
    from .test_gpu import fused_operation, unowned

    def bare(hit, out):
        out[...] = real_cupy.where(hit, 0.1, 0.0)

    def typed(hit, out):
        out[...] = real_cupy.where(hit, np.float32(0.1), np.float32(0.0))

    def scaled(x, s, out):
        out[...] = x * s

    hit, out = unowned(real_cupy, (2,), np.bool_), unowned(real_cupy, (2,), np.float32)
    assert "cupy_where(v0_0, v0_1, v0_2, v0_3)" in fused_operation(bare, hit, out)
    assert "float16 v0_1" in fused_operation(bare, hit, out)
    assert "float16" not in fused_operation(typed, hit, out)
    x = unowned(real_cupy, (4,), np.int8)
    assert "float16 v0_0" in fused_operation(scaled, x, 0.3, out)


@pytest.mark.gpu
def test_real_cupy_gives_blocks_back_to_the_pool_inside_a_capture_as_the_double_says(real_gpu):
    """The twin of the graph-memory rule: with CUB, a reduction captured into ``out``
    takes blocks from the pool and gives them back before the capture ends
    (``cupy.cuda.MemoryHook``), so the graph would replay on freed memory; CuPy's own
    reduction kernel takes none, and its graph replays right."""
    from .test_gpu import memory_log

    cupy = real_gpu.cupy
    z = cupy.ones((8, 10), dtype=cupy.float32)
    s = cupy.empty((8, 1), dtype=cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    saved = cupy._core.get_routine_accelerators()

    def capture():
        with memory_log(cupy) as log, stream:
            stream.begin_capture()
            try:
                cupy.sum(z, axis=1, keepdims=True, out=s)
            finally:
                graph = stream.end_capture()
        return graph, log

    try:
        cupy._core.set_routine_accelerators(["cub"])
        _, on = capture()
        cupy._core.set_routine_accelerators([])
        graph, off = capture()
    finally:
        cupy._core.set_routine_accelerators(saved)
    assert set(on.mallocs) & set(on.frees)  # taken and given back while capturing
    assert off.mallocs == []
    with stream:  # on the capture's stream: a non-blocking one does not wait for the null one
        s.fill(0)
        graph.launch()
    stream.synchronize()
    assert cupy.asnumpy(s).ravel().tolist() == [10.0] * 8


@pytest.mark.gpu
def test_real_cupy_memgetinfo_answers_for_the_current_device_as_the_double_does(real_gpu):
    """cudaMemGetInfo reads the current device; the package reads it in the scope of the
    GPU the data goes to (``parallel.stream.available_bytes``)."""
    from mlp_xp.backends import get_backend
    from mlp_xp.parallel.stream import available_bytes

    cupy = real_gpu.cupy
    last = cupy.cuda.runtime.getDeviceCount() - 1
    if last < 1:
        pytest.skip("needs two GPUs")
    with cupy.cuda.Device(last):
        before = cupy.cuda.runtime.memGetInfo()[0]
        block = cupy.empty(1 << 30, dtype=cupy.uint8)  # 1 GiB on the last GPU only
        after = cupy.cuda.runtime.memGetInfo()[0]
    assert before - after >= 1 << 30
    free, what = available_bytes(get_backend(f"gpu:{last}"))
    assert abs(free - cupy.cuda.Device(last).mem_info[0]) < 64 << 20 and f"gpu:{last}" in what
    del block


#: CUDA type names in CuPy's generated kernels, as NumPy type characters
_CUDA_TYPES = {"bool": "?", "signed char": "b", "unsigned char": "B", "short": "h",
               "unsigned short": "H", "int": "i", "unsigned int": "I", "long long": "q",
               "unsigned long long": "Q", "float16": "e", "float": "f", "double": "d"}  # fmt: skip


@pytest.mark.gpu
def test_real_cupy_fusion_picks_the_loops_the_double_picks(real_cupy):
    """For ufuncs, arrays of every kind and Python and NumPy scalars on either side, the loop
    CuPy's fusion front end writes into the kernel is the one the double's fusion picks
    (``tests/cupy_double/_fusion.py``). Left out: ``subtract`` and ``power`` of two
    booleans, whose CuPy tables start with a boolean loop NumPy's lack."""
    from .cupy_double import _fusion
    from .test_gpu import fused_operation, unowned

    names = ["add", "subtract", "multiply", "true_divide", "maximum", "greater_equal",
             "equal", "bitwise_and", "right_shift", "where", "power", "floor_divide"]  # fmt: skip
    dtypes = [np.bool_, np.int8, np.uint8, np.int32, np.uint32, np.int64, np.float16,
              np.float32, np.float64]  # fmt: skip
    scalars = [1, -1, 300, 0.5, 1e40, True, np.float32(0.5), np.int32(3)]
    out, hit = unowned(real_cupy, (4,), np.float64), unowned(real_cupy, (4,), np.bool_)
    differ = []
    for name in names:
        for dtype in dtypes:
            x = unowned(real_cupy, (4,), dtype)
            for scalar in scalars:
                for args in ((x, scalar), (scalar, x)):
                    if name in ("subtract", "power") and dtype == np.bool_ and scalar is True:
                        continue
                    if name == "where":
                        args = (hit, *args)

                    def kernel(*a, _name=name):
                        a[-1][...] = getattr(real_cupy, _name)(*a[:-1])

                    try:
                        source = fused_operation(kernel, *args, out)
                    except TypeError:
                        real = "refused"
                    else:
                        ufunc = "true_divide" if name == "true_divide" else name
                        k = re.search(rf"cupy_{ufunc}\(v(\d+)_0", source).group(1)
                        line = next(s for s in source.splitlines() if f" v{k}_0;" in s)
                        chars = [_CUDA_TYPES[d.strip().rsplit(" ", 1)[0]]
                                 for d in line.split(";") if d.strip()]  # fmt: skip
                        real = [np.dtype(c) for c in chars]
                    host = [a if _fusion._scalar(a) else np.zeros(4, a.dtype) for a in args]
                    fn = np.where if name == "where" else getattr(np, name)
                    try:
                        loop = _fusion.choose(fn, host)
                        mine = [np.dtype(c) for c in loop.replace("->", "")]
                    except TypeError:
                        mine = "refused"
                    if mine != real:
                        differ.append((name, np.dtype(dtype).name, repr(scalar), real, mine))
    assert differ == []
