"""Model files: round trips, device neutrality, and refusing anything unsafe."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mlp_xp import MLP, load_model, save_model
from mlp_xp.checkpoint import FORMAT_VERSION, read_file, write_file
from mlp_xp.errors import ModelFileError


@pytest.fixture
def model():
    return MLP(784, "maxout:20:2,16", 10, activation="tanh", l2=1e-3, backend="cpu", seed=4)


def test_save_load_round_trip(tmp_path, model, backend):
    path = save_model(tmp_path / "m.npz", model, normalization={"scale": 1 / 255})
    loaded = load_model(path, backend)
    assert loaded.config() == model.config()
    assert loaded.meta["normalization"] == {"scale": 1 / 255}
    for k, v in model.params_numpy().items():
        np.testing.assert_array_equal(loaded.params_numpy()[k], v)


def test_file_holds_only_plain_arrays_and_json(tmp_path, model):
    path = save_model(tmp_path / "m.npz", model)
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype.kind in "uif" for k in npz.files)
        meta = json.loads(npz["meta"].tobytes())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["model"]["hidden"] == ["maxout:20:2", "16"]
    assert len(meta["checksum"]["value"]) == 64


def test_a_model_loads_where_cupy_cannot_be_imported(tmp_path, model):
    path = save_model(tmp_path / "m.npz", model)
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import numpy as np\nfrom mlp_xp import load_model\n"
        f"m = load_model({str(path)!r}, 'auto')\n"
        "print(m.backend.name, m.predict(np.zeros((2, 784), np.float32)).shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["numpy", "(2,)"]


def test_tampered_array_fails_the_checksum(tmp_path, model):
    path = save_model(tmp_path / "m.npz", model)
    meta, arrays = read_file(path)
    arrays["param/W1"] = arrays["param/W1"] + 1e-3
    meta.pop("checksum")
    blob = np.frombuffer(json.dumps({**meta, "checksum": {"value": "0" * 64}}).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", meta=blob, **arrays)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_model(tmp_path / "bad.npz", "cpu")


def test_newer_format_version_is_refused_naming_both(tmp_path, model):
    path = save_model(tmp_path / "m.npz", model)
    meta, arrays = read_file(path)
    meta = {
        k: v
        for k, v in meta.items()
        if k not in ("arrays", "checksum", "format_version", "format", "kind")
    }
    write_file(tmp_path / "new.npz", "model", meta, arrays)
    raw = dict(np.load(tmp_path / "new.npz"))
    m = json.loads(raw["meta"].tobytes())
    m["format_version"] = FORMAT_VERSION + 1
    raw["meta"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    np.savez(tmp_path / "new.npz", **raw)
    with pytest.raises(
        ModelFileError, match=f"version {FORMAT_VERSION + 1}.*up to version {FORMAT_VERSION}"
    ):
        load_model(tmp_path / "new.npz", "cpu")


def test_truncated_file_is_refused(tmp_path, model):
    path = save_model(tmp_path / "m.npz", model)
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(tmp_path / "cut.npz", "cpu")


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "nope.npz", "cpu")
