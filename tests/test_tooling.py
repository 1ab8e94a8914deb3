"""Progress, run logs, plots, your own digit images, and downloads (never the network)."""

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw  # the test extra installs Pillow, matplotlib and tqdm

from mlp_xp import MLP, fit
from mlp_xp.cli import main
from mlp_xp.cli.progress import ProgressBar, RunLog
from mlp_xp.data import load_digits, write_idx
from mlp_xp.errors import DataError


@pytest.fixture
def run_dir(trained_run):
    """The session's real (short) training run with --run-dir (conftest.py)."""
    return trained_run


def test_run_dir_holds_history_csv_json_and_the_model(run_dir):
    assert (run_dir / "model.npz").is_file()
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,val_accuracy,val_mse,seconds,lr,device"
    assert len(rows) == 13 and rows[-1].startswith("12,")
    info = json.loads((run_dir / "history.json").read_text())
    assert info["backend"] == "numpy" and len(info["history"]["val_accuracy"]) == 12
    assert set(info["history"]["lr"]) == {0.08}  # the default: a constant rate


def test_progress_bar_shows_samples_per_second_and_loss(digits):
    stream = io.StringIO()
    pick = np.arange(0, 5000, 20)
    X = digits.images[pick].reshape(-1, 784) / 255.0
    model = MLP(784, (16,), 10, backend="cpu")
    fit(
        model,
        X,
        digits.labels[pick],
        epochs=2,
        batch_size=16,
        augment="none",
        callbacks=[ProgressBar(stream, mininterval=0)],
    )
    text = stream.getvalue()
    assert "epoch 1/2" in text and "img/s" in text and "loss=" in text
    assert "epoch   2/2  loss" in text  # the finished epoch's line stays


def test_plot_writes_the_four_pngs(run_dir):
    bench = {
        "network": "784-300-100-10",
        "samples": 60000,
        "results": [
            {"backend": b, "device": d, "batch_size": bs, "epoch_seconds": t}
            for b, d, f in (("numpy", "cpu", 1.0), ("cupy", "gpu", 0.05))
            for bs, t in ((32, 3 * f), (128, 1 * f), (512, 0.6 * f))
        ],
    }
    (run_dir / "bench.json").write_text(json.dumps(bench))
    assert main(["plot", str(run_dir)]) == 0
    for name in ("learning_curves", "confusion_matrix", "worst_digits", "reliability", "bench"):
        with Image.open(run_dir / f"{name}.png") as img:
            assert img.format == "PNG" and img.width > 400 and img.height > 250
            # not a blank canvas
            assert np.asarray(img.convert("L")).std() > 5


def test_plot_without_a_run_is_exit_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no history.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"history": 5}',
        '{"history": {"epoch": []}}',
        '{"history": {"epoch": [1, 2], "train_loss": [0.5]}}',
        '{"history": {"epoch": [1], "train_loss": [0.5], "val_accuracy": [0.9, 0.8]}}',
    ],
)
def test_plot_of_a_history_file_of_the_wrong_shape_is_exit_2(tmp_path, capsys, text):
    (tmp_path / "history.json").write_text(text)
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a history file written by mlp-xp" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "learning_curves.png").exists()


def _canvas(size=(180, 220), bg=255):
    return Image.new("L", size, bg)


def _drawn_digits(tmp_path) -> dict:
    """Digits drawn with thick dark strokes on white paper, off-centre, various sizes."""
    files = {}
    img = _canvas()
    ImageDraw.Draw(img).ellipse((40, 40, 130, 190), outline=0, width=14)
    img.save(tmp_path / "zero.png")
    files["zero.png"] = 0
    img = _canvas()
    ImageDraw.Draw(img).line((100, 30, 96, 200), fill=0, width=16)
    img.save(tmp_path / "one.png")
    files["one.png"] = 1
    img = _canvas((240, 240))
    d = ImageDraw.Draw(img)
    d.line((50, 40, 190, 40), fill=0, width=16)
    d.line((190, 40, 100, 210), fill=0, width=16)
    img.save(tmp_path / "seven.jpg", quality=95)
    files["seven.jpg"] = 7
    return files


def _real_digit_photos(tmp_path, digits) -> dict:
    """Embedded digits enlarged, inverted to ink-on-paper, tinted RGB, with transparency."""
    files = {}
    for k, idx in enumerate([5, 1005, 2005, 3005, 4005]):
        src = 255 - digits.images[idx]  # dark ink on white
        big = Image.fromarray(src).resize((140, 140), Image.BILINEAR)
        paper = Image.new("RGB", (260, 200), (250, 245, 235))
        paper.paste(Image.merge("RGB", [big] * 3), (20 + 20 * k, 30))
        name = f"photo{k}.png"
        if k % 2:
            paper = paper.convert("RGBA")
        paper.save(tmp_path / name)
        files[name] = int(digits.labels[idx])
    return files


def test_predict_recognises_digits_the_tests_draw(run_dir, tmp_path, digits, capsys):
    files = {**_drawn_digits(tmp_path), **_real_digit_photos(tmp_path, digits)}
    assert (
        main(["predict", str(run_dir / "model.npz"), *[str(tmp_path / f) for f in files], "--json"])
        == 0
    )
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got = {Path(r["input"]).name: r["digit"] for r in results}
    assert all(len(r["top3"]) == 3 for r in results)
    wrong = {f: (got[f], t) for f, t in files.items() if got[f] != t}
    assert len(wrong) <= 1, wrong


def test_image_conversion_follows_the_mnist_convention(tmp_path):
    from mlp_xp.data.images import load_digit_image

    img = _canvas((300, 200))
    ImageDraw.Draw(img).rectangle((200, 40, 230, 180), fill=0)  # dark bar, far right
    img.save(tmp_path / "bar.png")
    out = load_digit_image(tmp_path / "bar.png")
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out.max() == 255 and out[0].max() == 0 and out[:, 0].max() == 0  # bright ink, dark bg
    rows, cols = np.nonzero(out > 64)
    assert rows.max() - rows.min() + 1 <= 21  # fits 20 px (+ filter)
    com = (
        np.array([(out.sum(axis=1) * np.arange(28)).sum(), (out.sum(axis=0) * np.arange(28)).sum()])
        / out.sum()
    )
    assert np.all(np.abs(com - 13.5) <= 1.0)  # centred by mass


def test_blank_or_unreadable_images_are_data_errors(tmp_path):
    from mlp_xp.data.images import load_digit_image

    _canvas().save(tmp_path / "blank.png")
    with pytest.raises(DataError, match="no digit found"):
        load_digit_image(tmp_path / "blank.png")
    (tmp_path / "fake.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not an image"):
        load_digit_image(tmp_path / "fake.png")


# --------------------------------------------------------------------------
# downloads: a local file:// mirror, never the network
# --------------------------------------------------------------------------


@pytest.fixture
def local_mirror(tmp_path, monkeypatch):
    from mlp_xp.data import download as dl

    src = tmp_path / "mirror"
    src.mkdir()
    r = np.random.default_rng(0)
    md5 = {}
    for name, arr in (
        ("train-images-idx3-ubyte.gz", r.integers(0, 255, (30, 28, 28))),
        ("train-labels-idx1-ubyte.gz", np.arange(30) % 10),
        ("t10k-images-idx3-ubyte.gz", r.integers(0, 255, (10, 28, 28))),
        ("t10k-labels-idx1-ubyte.gz", np.arange(10) % 10),
    ):
        write_idx(src / name, arr.astype(np.uint8))
        md5[name] = hashlib.md5((src / name).read_bytes()).hexdigest()
    monkeypatch.setitem(dl.DATASETS, "mnist", ([src.as_uri() + "/"], md5))
    return src


def test_download_verifies_and_gives_a_folder_train_accepts(local_mirror, tmp_path):
    out = tmp_path / "mnist"
    assert main(["download", "mnist", "--dir", str(out)]) == 0
    assert len(load_digits(out, "train")) == 30 and len(load_digits(out, "test")) == 10
    assert main(["download", "mnist", "--dir", str(out)]) == 0  # idempotent


def test_download_resumes_a_partial_file(local_mirror, tmp_path):
    from mlp_xp.data.download import download

    out = tmp_path / "mnist"
    out.mkdir()
    full = (local_mirror / "train-images-idx3-ubyte.gz").read_bytes()
    (out / "train-images-idx3-ubyte.gz.part").write_bytes(full[:1000])
    download("mnist", out, log=lambda s: None)
    assert (out / "train-images-idx3-ubyte.gz").read_bytes() == full
    assert not list(out.glob("*.part"))


def test_download_refuses_a_bad_checksum(local_mirror, tmp_path, monkeypatch):
    from mlp_xp.data import download as dl

    mirrors, md5 = dl.DATASETS["mnist"]
    monkeypatch.setitem(
        dl.DATASETS, "mnist", (mirrors, {**md5, "t10k-labels-idx1-ubyte.gz": "0" * 32})
    )
    with pytest.raises(DataError, match="checksum mismatch"):
        dl.download("mnist", tmp_path / "x", log=lambda s: None)
    assert not (tmp_path / "x" / "t10k-labels-idx1-ubyte.gz").exists()


def test_download_offline_is_one_line_and_exit_2(tmp_path):
    code = (
        "import sys, mlp_xp.data.download as d\n"
        "d.DATASETS['mnist'] = (['http://127.0.0.1:9/'], d.DATASETS['mnist'][1])\n"
        "from mlp_xp.cli import main\n"
        f"sys.exit(main(['download', 'mnist', '--dir', {str(tmp_path / 'm')!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "could not download mnist" in out.stderr and "offline" in out.stderr


def test_run_log_without_a_held_out_split(tmp_path, digits):
    X = digits.images[::50].reshape(-1, 784) / 255.0
    fit(
        MLP(784, (8,), 10, backend="cpu"),
        X,
        digits.labels[::50],
        epochs=2,
        batch_size=20,
        augment="none",
        callbacks=[RunLog(tmp_path, {"device": "cpu"})],
    )
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].split(",")[2:4] == ["", ""]


def test_plot_draws_the_roofline_of_a_to_accuracy_bench(run_dir):
    """``mlp-xp bench --to-accuracy ... --json > RUN_DIR/bench.json``: bench.png is its roofline."""
    from mlp_xp.cli.step_parts import step_work

    seconds = {"gather": 1e-4, "augmentation": 1e-3, "matmuls": 3e-3, "elementwise": 5e-4,
               "optimizer": 3e-4}  # fmt: skip
    bench = {
        "target": 0.9,
        "devices": [{"device": "cpu", "matmul_gflops": 50.0, "copy_gbs": 15.0}],
        "rows": [{"device": "cpu", "batch_size": b,
                  "parts": {"seconds": seconds, "work": step_work([784, 300, 100, 10], b)}}
                 for b in (32, 512)],
    }  # fmt: skip
    (run_dir / "bench.json").write_text(json.dumps(bench))
    assert main(["plot", str(run_dir)]) == 0
    with Image.open(run_dir / "bench.png") as img:
        assert img.format == "PNG" and np.asarray(img.convert("L")).std() > 5
