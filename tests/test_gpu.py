"""End to end on a GPU: on the counting CuPy double everywhere, and on a real GPU where
there is one (``MLP_XP_REQUIRE_GPU=1`` turns that skip into a failure)."""

import contextlib
import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from mlp_xp import MLP, fit, load_model
from mlp_xp.backends import device_error_for
from mlp_xp.cli import main
from mlp_xp.errors import DeviceError

from .helpers import xp_assert_close


def test_train_on_gpu_then_evaluate_on_cpu_without_cupy(gpu_backend, tmp_path, capsys):
    out = tmp_path / "gpu.npz"
    assert (
        main(
            [
                *"train --device gpu --epochs 3 --out".split(),
                str(out),
                *"--json --augment affine".split(),
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["backend"] == "cupy" and trained["val_accuracy"] > 0.85
    assert trained["gpu_step"] == "fast"
    code = (
        "import sys, json; sys.modules['cupy'] = None\nfrom mlp_xp.cli import main\n"
        f"sys.exit(main(['evaluate', {str(out)!r}, '--device', 'cpu', '--json']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "numpy"
    assert result["accuracy"] == pytest.approx(trained["val_accuracy"], abs=2e-3)


@pytest.mark.parametrize("gpu_step", ["generic", "fast"])
def test_gpu_and_cpu_training_agree(gpu_backend, digits, gpu_step):
    X = (digits.images[::10] / 255.0).reshape(-1, 784).astype(np.float32)
    y = digits.labels[::10]
    params = []
    for b in ("cpu", gpu_backend):
        model = MLP(784, (64, 32), 10, backend=b, seed=3, l2=1e-4)
        fit(
            model,
            X,
            y,
            epochs=2,
            batch_size=50,
            augment="elastic",
            dropout=0.1,
            optimizer="adam",
            lr=1e-3,
            **({"gpu_step": gpu_step} if b != "cpu" else {}),
        )
        params.append(model.params_numpy())
    for k in params[0]:
        np.testing.assert_allclose(params[1][k], params[0][k], rtol=1e-3, atol=1e-4)


def test_gpu_out_of_memory_is_a_clear_error(gpu_backend):
    cupy = gpu_backend.cupy
    with pytest.raises(MemoryError) as info:  # cupy.cuda.memory.OutOfMemoryError
        cupy.empty(1 << 50, dtype=cupy.uint8)  # a petabyte
    error = device_error_for(info.value)
    assert isinstance(error, DeviceError) and "out of memory" in str(error)


def test_loading_a_model_onto_the_gpu(gpu_backend, tmp_path):
    from mlp_xp import save_model

    cpu = MLP(784, (16,), 10, backend="cpu", seed=0)
    save_model(tmp_path / "m.npz", cpu)
    gpu = load_model(tmp_path / "m.npz", gpu_backend)
    X = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    xp_assert_close(
        gpu.forward(gpu.backend.put(X)), cpu.forward(X), gpu_backend, rtol=1e-4, atol=1e-6
    )


@pytest.mark.gpu
def test_the_fast_step_passes_its_check_and_trains_like_the_generic_one_on_a_real_gpu(
    real_gpu, digits
):
    """What the double cannot prove: CuPy's fusion, cuBLAS and graph replay, for real."""
    from .test_scripts import load

    X = (digits.images[:2048] / 255.0).reshape(-1, 784).astype(np.float32)
    rows = load("gpu_report").fast_versus_generic(real_gpu, X, digits.labels[:2048])
    *recipes, verdicts = rows
    assert all(v == "passed" for v in verdicts["verdicts"].values()), verdicts
    for r in recipes:
        assert r["fast step used"], r
        assert r["losses (relative)"] < 1e-4 and r["parameters (relative)"] < 1e-3, r


def import_real_cupy(request):
    """The real CuPy module (a GPU is not needed), skipped where it is not installed."""
    from .conftest import require_gpu

    try:
        import cupy
    except ImportError:
        if require_gpu(request.config):
            pytest.fail("CuPy is not installed (required by --require-gpu/MLP_XP_REQUIRE_GPU)")
        pytest.skip("CuPy is not installed")
    return cupy


@pytest.fixture
def real_cupy(request):
    return import_real_cupy(request)


_ADDRESS = [1 << 20]


def unowned(cupy, shape, dtype):
    """A device array over unowned memory at a made-up address: enough for CuPy's fusion
    front end to trace a kernel, with no GPU."""
    from cupy.cuda import memory

    nbytes = max(8, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    mem = memory.UnownedMemory(_ADDRESS[0], nbytes, None, 0)
    _ADDRESS[0] += nbytes + 256
    return cupy.ndarray(shape, dtype=dtype, memptr=memory.MemoryPointer(mem, 0))


def _traced(func, name, args):
    """The elementwise kernel CuPy's fusion makes of ``func(*args)`` (traced, not run)."""
    from cupy._core import fusion

    history = fusion._FusionHistory()
    fusion._thread_local.history, fusion._thread_local.is_old_fusing = history, True
    try:
        return history.get_fusion(func, args, name)[0]
    finally:
        fusion._thread_local.history, fusion._thread_local.is_old_fusing = None, False


def memory_log(cupy):
    """A ``cupy.cuda.MemoryHook`` noting each block taken from CuPy's pool (``mallocs``) and
    each given back (``frees``), by address; ``with memory_log(cupy) as log:``."""

    class Log(cupy.cuda.MemoryHook):
        name = "mlp_xp_memory_log"

        def __init__(self):
            self.mallocs, self.frees = [], []

        def malloc_postprocess(self, **kwargs):
            self.mallocs.append(kwargs["mem_ptr"])

        def free_preprocess(self, **kwargs):
            self.frees.append(kwargs["mem_ptr"])

    return Log()


@contextlib.contextmanager
def no_sync(cupy):
    """Inside, CuPy raises ``cupyx.DeviceSynchronized`` where it would wait for the device
    (``ndarray.get`` -- so ``float()``, boolean masks, ``asnumpy`` -- and
    ``Device.synchronize``: cupy/_core/syncdetect.py, the syncs the double counts)."""
    import cupyx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allow_synchronize is deprecated, not removed
        with cupyx.allow_synchronize(False):
            yield


def fused_operation(func, *args) -> str:
    """The CUDA source of the body CuPy's fusion makes of ``func(*args)``."""
    return _traced(func, func.__name__, args).operation


@pytest.mark.gpu
@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_real_cupy_fusion_compiles_every_fast_kernel_to_the_expected_types(
    real_cupy, dropout, optimizer
):
    """CuPy's fusion front end traces each fused kernel into CUDA source; it needs no GPU,
    only device arrays, which unowned memory at a made-up address provides."""
    from mlp_xp.gpu.kernels import Kernels
    from mlp_xp.optim import make_optimizer

    def fake(shape, dtype):
        return unowned(real_cupy, shape, dtype)

    traced = []

    def trace(kernel, *args):
        traced.append(_traced(kernel.func, kernel.name, args))
        return traced[-1]

    model = MLP(784, (300, 100), 10, backend="cpu")
    opt = make_optimizer(optimizer, model.params, model.backend, 0.05)
    k = Kernels(real_cupy, model, opt, dropout, (28, 28))
    B, f32, u32 = 128, np.float32, np.uint32
    mask = (fake((B, 1), u32), fake((1, 300), u32), fake((), u32)) if dropout else ()
    forward = trace(
        k.forward[0], fake((B, 300), f32), fake((300,), f32), fake((B, 300), f32), *mask
    )
    trace(k.backward[0], fake((B, 300), f32), fake((B, 300), f32), *mask)
    trace(k.add_bias, fake((B, 10), f32), fake((10,), f32))
    trace(k.exp_shifted, fake((B, 10), f32), fake((B, 1), f32), fake((B, 10), f32))
    z = [fake(s, f32) for s in ((B, 10), (B, 1), (B, 10), (B, 1))]
    labels = (fake((B, 1), u32), fake((1, 10), u32))
    trace(k.softmax_xent, *z, *labels, 1.0 / B, fake((B, 10), f32), fake((B, 10), f32))
    trace(k.bookkeeping, fake((), f32), fake((), u32), fake((), f32), fake((), u32), fake((), f32))
    slots = [fake((1000,), f32) for _ in opt.slots]
    update = trace(k.update, *[fake((1000,), f32) for _ in range(3)], fake((), f32), *slots)
    trace(k.warp_index, fake((B, 1, 784), f32), fake((B, 1, 784), f32), fake((B, 1, 1), u32),
          fake((1, 4, 1), np.int32), fake((B, 4, 784), np.int32))  # fmt: skip
    trace(k.warp_blend, *[fake((B, 784), f32) for _ in range(7)])
    assert not re.search(r"^double ", update.operation, re.M)  # the update stays in float32
    # no Python scalar made an operation float16 (the double's fusion notes the same)
    assert not [t.name for t in traced if "float16" in t.operation]
    if dropout:  # the hash runs in 32-bit unsigned arithmetic, as on NumPy
        assert "cupy_multiply" in forward.operation and "unsigned int" in forward.operation


def test_the_data_is_checked_against_the_free_memory_of_the_gpu_it_goes_to(
    request, tmp_path, capsys
):
    """gpu:1 with 2 MB while gpu:0 has 16 GiB: the checks read cudaMemGetInfo with gpu:1
    current (the double's memory is per device, as a GPU's), so gpu:1 refuses the run (the
    budget of network, batch and data comes first); read with gpu:0 current, they would
    have let it through."""
    from .conftest import simulated_gpu
    from .cupy_double import STATE

    simulated_gpu(request)
    STATE.totals[1] = 2 << 20
    argv = f"train --hidden 16 --epochs 1 --quiet --out {tmp_path / 'm.npz'} --device"
    assert main([*argv.split(), "gpu:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "but 2.1 MB is free on gpu:1" in err[0]  # 2 MiB, not 16 GiB
    assert not (tmp_path / "m.npz").exists()
