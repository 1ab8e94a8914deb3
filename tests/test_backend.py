"""Backend choice, the GPU probe, and that importing the package never loads CuPy."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mlp_xp import MLP, fit
from mlp_xp.backends import get_backend, gpu_probe
from mlp_xp.errors import BackendMismatchError, ConfigError, DeviceError

from .conftest import simulated_gpu

BLOCK_CUPY = "import sys; sys.modules['cupy'] = None\n"


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_mlp_xp_does_not_import_cupy():
    out = run_py(
        "import sys, mlp_xp, mlp_xp.cli, mlp_xp.cli.commands, mlp_xp.train, "
        "mlp_xp.data\nprint('cupy' in sys.modules)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_backends_compare_equal_by_device():
    assert get_backend("cpu") == get_backend("cpu") == get_backend("numpy")
    assert get_backend("cpu") != get_backend("array-api-strict")
    assert len({get_backend("cpu"), get_backend("cpu"), get_backend("array-api-strict")}) == 2
    assert get_backend("cpu") != "numpy"


def test_put_and_get_move_whole_containers(backend):
    tree = {"a": np.arange(3.0), "pair": (np.ones((2, 2)), [np.zeros(1), 4.0]), "none": None}
    on = backend.put(tree, "float32")
    assert isinstance(on["pair"], tuple) and isinstance(on["pair"][1], list)
    assert on["none"] is None
    for leaf in (on["a"], on["pair"][0], on["pair"][1][0], on["pair"][1][1]):
        assert backend.owns(leaf) and leaf.dtype == backend.dtype("float32")
    back = backend.get(on)
    assert isinstance(back["a"], np.ndarray) and back["a"].dtype == np.float32
    np.testing.assert_array_equal(back["pair"][0], np.ones((2, 2)))
    assert float(back["pair"][1][1]) == 4.0


def test_put_refuses_another_backends_array():
    strict = get_backend("array-api-strict")
    with pytest.raises(BackendMismatchError, match="array_api_strict array.*numpy"):
        get_backend("cpu").put({"W": strict.put(np.zeros(2))})


def test_cpu_backend_reports_its_memory():
    b = get_backend("cpu")
    assert b.name == "numpy" and b.kind == "cpu" and "cpu" in b.device
    b.synchronize()
    big = np.ones(50_000_000, np.uint8)  # 50 MB touched: the peak must count it
    assert b.memory_info()["host_peak_rss_bytes"] >= big.nbytes


def test_unknown_device_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        get_backend("tpu")


def test_env_var_sets_the_default(monkeypatch):
    monkeypatch.setenv("MLP_XP_DEVICE", "array-api-strict")
    assert get_backend().name == "array_api_strict"
    monkeypatch.setenv("MLP_XP_DEVICE", "cpu")
    assert get_backend().name == "numpy"


def test_without_cupy_auto_falls_back_and_gpu_names_the_reason_and_fix():
    out = run_py(
        BLOCK_CUPY + "import json\nfrom mlp_xp.backends import get_backend\n"
        "from mlp_xp.errors import DeviceError\n"
        "b = get_backend('auto')\n"
        "try:\n    get_backend('gpu'); msg = ''\n"
        "except DeviceError as e:\n    msg = str(e)\n"
        "print(json.dumps([b.name, b.note, msg]))"
    )
    assert out.returncode == 0, out.stderr
    name, note, msg = json.loads(out.stdout)
    assert name == "numpy" and "CuPy" in note
    assert "no usable GPU" in msg and "pip install" in msg and "--device cpu" in msg


def test_auto_falls_back_when_cupy_imports_but_no_device_works():
    fake = (
        "import sys, types\n"
        "cupy = types.ModuleType('cupy'); cupy.__version__ = '99.0'\n"
        "class R:\n    @staticmethod\n    def getDeviceCount():\n"
        "        raise RuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n"
        "cupy.cuda = types.SimpleNamespace(runtime=R)\n"
        "sys.modules['cupy'] = cupy\n"
        "from mlp_xp.backends import get_backend\n"
        "b = get_backend('auto'); print(b.name, '|', b.note)\n"
    )
    out = run_py(fake)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("numpy |") and "no CUDA-capable device" in out.stdout


def test_gpu_request_without_gpu_raises_device_error():
    if gpu_probe().ok:
        pytest.skip("a GPU is present here; the error path is tested in a subprocess above")
    with pytest.raises(DeviceError, match="no usable GPU"):
        get_backend("gpu")


@pytest.mark.gpu
def test_gpu_backend_round_trip(gpu_backend):
    b = gpu_backend
    a = b.put(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert b.owns(a) and not b.owns(np.zeros(2))
    np.testing.assert_array_equal(b.get(a * 2), np.arange(6).reshape(2, 3) * 2)
    b.synchronize()
    assert b.memory_info()["gpu_pool_used_bytes"] > 0


def test_without_array_api_compat_cupy_trains_through_a_thin_proxy(request, monkeypatch):
    """CuPy lacks a few standard names (concat, astype, asarray(copy=), device=); the
    proxy adds them, and a short run on it matches NumPy's."""
    simulated_gpu(request)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", None)
    gpu = get_backend("gpu")
    assert gpu.xp.__name__ == "cupy_array_api"
    r = np.random.default_rng(0)
    X, y = r.random((64, 784), dtype=np.float32), r.integers(0, 10, 64)
    params = []
    for b in ("cpu", gpu):
        model = MLP(784, (16,), 10, backend=b, seed=1, l2=1e-4)
        fit(model, X, y, epochs=2, batch_size=16, augment="affine", dropout=0.2)
        params.append(model.params_numpy())
    for k in params[0]:
        np.testing.assert_allclose(params[1][k], params[0][k], rtol=1e-4, atol=1e-6)
