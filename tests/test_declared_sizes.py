"""Crafted files whose headers lie about their size are refused before anything that
size is allocated: IDX headers, and the ``.npy`` headers inside model files."""

import gzip
import io
import json
import re
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from mlp_xp import MLP, load_model, read_idx, save_model
from mlp_xp.checkpoint import read_file
from mlp_xp.cli import main
from mlp_xp.data import load_array_file
from mlp_xp.errors import DataError, ModelFileError

#: Far below any of the sizes the crafted headers claim (GiB to TiB).
MEMORY_BOUND = 64 * 2**20


def _peak_bytes(fn, *args):
    """Run ``fn(*args)`` (it must raise) and return the peak memory traced meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises((DataError, ModelFileError)) as info:
            fn(*args)
        return tracemalloc.get_traced_memory()[1], str(info.value)
    finally:
        tracemalloc.stop()


def _idx_header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


# --------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------

HUGE_IMAGES = [2**31, 28, 28]  # 1.5 TiB of pixels declared, 1 KiB present


@pytest.mark.parametrize("gz", [False, True])
def test_an_idx_header_claiming_more_than_the_file_holds_is_refused_without_allocating(
    tmp_path, gz
):
    raw = _idx_header(8, HUGE_IMAGES) + bytes(1024)
    path = tmp_path / ("big.gz" if gz else "big")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    peak, message = _peak_bytes(read_idx, path)
    if gz:  # judged from the compressed length alone: nothing past the header is inflated
        assert "declares 1,683,627,180,032 data bytes, but a gzip file of" in message
    else:
        assert "needs 1,683,627,180,032 data bytes, file has 1,024" in message
    assert peak < MEMORY_BOUND


def test_idx_files_larger_than_the_old_2_gib_cap_are_judged_by_their_header(tmp_path):
    # 3 GiB declared: refused because the data is missing, not because of a fixed cap
    raw = _idx_header(8, [3 * 2**30]) + bytes(10)
    (tmp_path / "labels").write_bytes(raw)
    (tmp_path / "labels.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(DataError, match="needs 3,221,225,472 data bytes, file has 10$"):
        read_idx(tmp_path / "labels")
    with pytest.raises(DataError, match="declares 3,221,225,472 data bytes, but a gzip file of"):
        read_idx(tmp_path / "labels.gz")


def test_gzip_data_past_the_declared_size_is_read_one_byte_past_and_refused(tmp_path):
    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(_idx_header(8, [3]) + bytes(3) + bytes(10**6)))
    with pytest.raises(DataError, match=r"more bytes past the end of the data .* \(3,\)"):
        read_idx(path)


def test_a_raw_idx_file_is_sized_before_it_is_read(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(_idx_header(8, [3]) + bytes(8))
    with pytest.raises(DataError, match="5 bytes past the end of the data"):
        read_idx(path)
    path.write_bytes(_idx_header(8, [3, 2]))
    with pytest.raises(DataError, match="needs 6 data bytes, file has 0"):
        read_idx(path)


def test_gzip_with_a_cut_header_is_a_clear_error(tmp_path):
    (tmp_path / "cut.gz").write_bytes(gzip.compress(_idx_header(8, [3, 2])[:7]))
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(tmp_path / "cut.gz")


# --------------------------------------------------------------------------
# model files (.npz)
# --------------------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path):
    return save_model(tmp_path / "m.npz", MLP(784, (16,), 10, backend="cpu", seed=0))


def _npy(array, header_shape=None, descr=None):
    """The .npy bytes of ``array``, its header optionally claiming another shape/dtype."""
    buf = io.BytesIO()
    header = npy_format.header_data_from_array_1_0(array)
    if header_shape is not None:
        header["shape"] = header_shape
    if descr is not None:
        header["descr"] = descr
    npy_format.write_array_header_1_0(buf, header)
    buf.write(np.ascontiguousarray(array).tobytes())
    return buf.getvalue()


def _repack(src, dst, *, shape=None, meta_shape=None, compress=None, descr=None):
    """Copy a model file, forging the W1 entry's .npy header and/or the metadata."""
    meta, arrays = read_file(src)
    if meta_shape is not None:
        meta["arrays"]["param/W1"]["shape"] = list(meta_shape)
    entries = {name: _npy(a) for name, a in arrays.items()}
    entries["param/W1"] = _npy(arrays["param/W1"], shape, descr)
    blob = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    entries["meta"] = _npy(blob)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            method = compress if name == "param/W1" and compress else zipfile.ZIP_STORED
            zf.writestr(name + ".npy", data, compress_type=method)
    return dst


TERA = (100_000, 100_000)  # 37.25 GiB of float32


@pytest.mark.parametrize(
    "forge, match",
    [
        (
            dict(shape=TERA),
            r"array 'param/W1' declares shape \(100000, 100000\) of float32 "
            r"\(40,000,000,000 bytes\) but the file holds 50,176 bytes for it",
        ),
        (dict(shape=TERA, meta_shape=TERA), r"declares shape \(100000, 100000\)"),
        (dict(shape=(16, 784)), "array 'param/W1' does not match its metadata"),
        (dict(compress=zipfile.ZIP_DEFLATED), "'param/W1' is compressed"),
        (dict(descr="|O"), "pickled/object data"),
        (dict(descr="<U4", shape=(784, 4)), "non-numeric dtype"),
    ],
)
def test_npz_headers_are_checked_against_the_file_and_its_metadata_before_reading(
    tmp_path, model_file, forge, match
):
    forged = _repack(model_file, tmp_path / "forged.npz", **forge)
    peak, message = _peak_bytes(load_model, forged, "cpu")
    assert peak < MEMORY_BOUND
    assert message.startswith(f"{forged}: ")
    assert re.search(match, message), message


def test_an_untouched_repack_still_loads(tmp_path, model_file):
    # the forging helper itself writes a valid file when it forges nothing
    copy = _repack(model_file, tmp_path / "copy.npz")
    original, again = load_model(model_file, "cpu"), load_model(copy, "cpu")
    for k, v in original.params_numpy().items():
        np.testing.assert_array_equal(again.params_numpy()[k], v)


def test_a_model_file_that_is_not_a_zip_is_named_so(tmp_path):
    (tmp_path / "text.npz").write_text("hello", encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"not an mlp_xp model file \(not a \.npz archive\)"):
        load_model(tmp_path / "text.npz", "cpu")


def test_a_npy_input_claiming_more_than_it_holds_is_refused_without_allocating(tmp_path):
    path = tmp_path / "digits.npy"
    path.write_bytes(_npy(np.zeros((2, 784), np.uint8), header_shape=(10**8, 784)))
    peak, message = _peak_bytes(load_array_file, path)
    assert peak < MEMORY_BOUND
    assert "declares shape (100000000, 784) of uint8 (78,400,000,000 bytes)" in message
    assert "the file holds 1,568 bytes" in message


def test_predict_on_a_forged_npy_is_one_line_and_exit_2(tmp_path, model_file, capsys):
    path = tmp_path / "digits.npy"
    path.write_bytes(_npy(np.zeros((2, 784), np.uint8), header_shape=(10**8, 784)))
    assert main(["predict", str(model_file), str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declares shape (100000000, 784)" in err[0]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=st.sampled_from([8, 9, 11, 12, 13, 14, 7]),
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=4),
    payload=st.binary(max_size=256),
    gz=st.booleans(),
)
def test_idx_files_with_random_headers_give_an_array_or_a_data_error(
    tmp_path, code, dims, payload, gz
):
    raw = _idx_header(code, dims) + payload
    path = tmp_path / ("f.gz" if gz else "f")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    try:
        arr = read_idx(path)
    except DataError:
        return
    assert list(arr.shape) == dims
