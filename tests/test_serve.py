"""``mlp-xp serve``: the HTTP API in-process (Starlette's TestClient) and as a real server
(the command in a subprocess on a free loopback port, stopped with SIGTERM)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mlp_xp.cli import main

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx", reason="httpx (Starlette's TestClient) is not installed")

with warnings.catch_warnings():  # Starlette names a successor of httpx for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from mlp_xp.serve import create_app
from mlp_xp.serve.batching import Batcher, Busy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:starlette.testclient")

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "mlp_xp" / "serve" / "static"


@pytest.fixture(scope="module")
def model_path(trained_run):
    return trained_run / "model.npz"


@pytest.fixture(scope="module")
def client(model_path):
    with TestClient(create_app(model_path, "cpu", max_body=2**20)) as c:
        yield c


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _seven() -> Image.Image:
    img = Image.new("L", (240, 240), 255)
    d = ImageDraw.Draw(img)
    d.line((50, 40, 190, 40), fill=0, width=16)
    d.line((190, 40, 100, 210), fill=0, width=16)
    return img


def _predict_cli(model_path, inputs, capsys) -> list:
    assert main(["predict", str(model_path), *map(str, inputs), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _same(a: dict, b: dict) -> None:
    """One answer of the API and one of ``predict --json`` agree (float32 forward passes
    over batches of different sizes: probabilities within rounding)."""
    assert a["digit"] == b["digit"]
    assert [t["digit"] for t in a["top3"]] == [t["digit"] for t in b["top3"]]
    assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)


# -------------------------------------------------------------------------------------------
# valid requests: the answers of predict
# -------------------------------------------------------------------------------------------


def test_json_pixels_one_and_a_batch_answer_like_predict(
    client, model_path, digits, tmp_path, capsys
):
    images = digits.images[[3, 1003, 2003, 3003, 4003]]
    np.save(tmp_path / "five.npy", images)
    expected = _predict_cli(model_path, [tmp_path / "five.npy"], capsys)
    batch = client.post("/predict", json={"pixels": images.tolist()})
    assert batch.status_code == 200
    answers = batch.json()
    assert [a["input"] for a in answers] == [f"pixels[{i}]" for i in range(5)]
    for got, want in zip(answers, expected, strict=True):
        assert set(got) == set(want)
        _same(got, want)
    one = client.post("/predict", json={"pixels": images[0].tolist()}).json()
    assert len(one) == 1 and one[0]["input"] == "pixels"
    _same(one[0], expected[0])
    flat = client.post("/predict", json={"pixels": (images[0].reshape(-1) / 255).tolist()})
    _same(flat.json()[0], expected[0])  # 784 fractions in [0, 1]: the same image


def test_an_uploaded_image_is_converted_like_predict_converts_a_photo(
    client, model_path, tmp_path, capsys
):
    from mlp_xp.data.images import load_digit_image

    (tmp_path / "seven.png").write_bytes(_png(_seven()))
    expected = _predict_cli(model_path, [tmp_path / "seven.png"], capsys)[0]
    raw = client.post("/predict", content=_png(_seven()), headers={"content-type": "image/png"})
    form = client.post("/predict", files={"file": ("seven.png", _png(_seven()), "image/png")})
    for response, name in ((raw, "upload"), (form, "seven.png")):
        assert response.status_code == 200
        (answer,) = response.json()
        assert answer["input"] == name and answer["digit"] == 7
        _same(answer, expected)
        seen = np.array(answer["image"])  # the 28x28 the network saw: predict's conversion
        np.testing.assert_array_equal(seen, load_digit_image(tmp_path / "seven.png"))


def test_a_blank_drawing_gets_predicts_no_digit_answer(client):
    blank = _png(Image.new("L", (280, 280), 255))
    (answer,) = client.post("/predict", content=blank, headers={"content-type": "image/png"}).json()
    assert answer["digit"] is None and answer["top3"] == [] and "no digit" in answer["note"]
    (dark,) = client.post("/predict", json={"pixels": np.zeros((28, 28)).tolist()}).json()
    assert dark["digit"] is None and "no digit" in dark["note"]


def test_what_predict_calls_not_a_digit_the_api_does_too(client, model_path, tmp_path, capsys):
    dot = np.zeros((28, 28), np.uint8)
    dot[13:15, 13:15] = 255  # a dot: the network alone would name a digit for it
    np.save(tmp_path / "dot.npy", dot[None])
    (expected,) = _predict_cli(model_path, [tmp_path / "dot.npy"], capsys)
    (answer,) = client.post("/predict", json={"pixels": dot.tolist()}).json()
    assert expected["digit"] is None and expected["note"].startswith("not a digit")
    assert answer["digit"] is None and answer["note"] == expected["note"]
    assert answer["evidence"] == expected["evidence"]


def test_model_health_openapi_and_the_page(client, model_path):
    model = client.get("/model").json()
    assert model["network"] == "784-300-100-10" and model["file"] == "model.npz"
    assert 0.5 < model["val_accuracy"] <= 1 and model["backend"] == "numpy"
    assert model["temperature"] > 0 and "fitted_on" in model["calibration"]
    health = client.get("/health").json()
    assert health["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and {"/predict", "/model", "/health"} <= set(
        spec["paths"]
    )
    assert "image/png" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and 'src="/app.js"' in page.text
    for url, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        response = client.get(url)
        assert response.headers["content-type"].startswith(kind)
        assert response.content == (STATIC / url[1:]).read_bytes()


def test_the_page_fetches_nothing_from_elsewhere():
    """Offline: no URL with a host, no protocol-relative URL, in any of the page's files."""
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[\w.-]+\.\w+", text.replace("://", "://")), path.name
        assert "@import" not in text and "url(" not in text


def test_the_wheel_ships_the_page():
    """pyproject's package data names every file of the page (else an installed
    ``mlp-xp serve`` would answer 500 for its own page)."""
    import fnmatch

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^packages = \[[^\]]*"mlp_xp\.serve"', pyproject, re.M)
    line = re.search(r'^"mlp_xp\.serve" = (\[.*?\])', pyproject, re.M)
    globs = json.loads(line.group(1))
    for path in STATIC.iterdir():
        assert any(fnmatch.fnmatch(f"static/{path.name}", g) for g in globs), path.name


# -------------------------------------------------------------------------------------------
# hostile requests: one clear 4xx line each, and the server goes on
# -------------------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG that claims ``width`` x ``height`` pixels (an image bomb:
    a few bytes that would decode to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


JSON = "application/json"
HOSTILE = [
    ("not JSON", b'{"pixels": [1, 2', JSON, 400, "not valid JSON"),
    ("JSON without pixels", b'{"image": []}', JSON, 400, "pixels"),
    ("JSON list", b"[1, 2, 3]", JSON, 400, "pixels"),
    ("deep JSON", b'{"pixels": ' + b"[" * 100000 + b"]" * 100000 + b"}", JSON, 400, ""),
    ("ragged", b'{"pixels": [[1, 2], [3]]}', JSON, 400, "ragged"),
    (
        "wrong shape",
        json.dumps({"pixels": np.zeros((27, 28)).tolist()}).encode(),
        JSON,
        400,
        "28x28",
    ),
    ("strings", json.dumps({"pixels": [["a"] * 28] * 28}).encode(), JSON, 400, "numbers"),
    (
        "NaN",
        b'{"pixels": [' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]}",
        JSON,
        400,
        "NaN",
    ),
    (
        "out of range",
        json.dumps({"pixels": np.full((28, 28), 300).tolist()}).encode(),
        JSON,
        400,
        "range",
    ),
    (
        "too many images",
        json.dumps({"pixels": np.zeros((257, 784), int).tolist()}).encode(),
        JSON,
        400,
        "at most 256",
    ),
    ("not an image", b"GIF89a but not really", "image/png", 400, "not an image"),
    ("truncated PNG", _png(_seven())[:200], "image/png", 400, "not an image"),
    ("image bomb", _png_header(100_000, 100_000), "image/png", 400, ""),
    ("text", b"seven", "text/plain", 415, "image file"),
    (
        "form without file",
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        400,
        "file",
    ),
    ("broken form", b"--b\r\nnonsense", "multipart/form-data; boundary=b", 400, ""),
    ("oversized", b"x" * (2**20 + 1), "image/png", 413, "limit"),
]


@pytest.mark.parametrize("what,body,kind,status,says", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_request_gets_one_clear_line_and_the_server_goes_on(
    client, digits, what, body, kind, status, says
):
    response = client.post("/predict", content=body, headers={"content-type": kind})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error and "\n" not in error and "Traceback" not in error
    assert "BytesIO" not in error  # the upload is named, not Python's object
    ok = client.post("/predict", json={"pixels": digits.images[3].tolist()})
    assert ok.status_code == 200 and ok.json()[0]["digit"] is not None


def test_a_streamed_body_over_the_limit_is_refused_as_it_passes_it(client):
    sent = []

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(100):
            sent.append(1)
            yield b"x" * 16384

    response = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_unknown_routes_and_methods_answer_json_and_no_path_reaches_the_disk(client):
    for path in ("/nothing", "/../pyproject.toml", "/static/../../pyproject.toml", "/app.js/x"):
        response = client.get(path)
        assert response.status_code == 404 and response.json() == {"error": "Not Found"}
    assert client.get("/predict").status_code == 405
    assert "error" in client.delete("/model").json()


def test_requests_open_no_file_and_the_model_is_read_once(model_path, tmp_path):
    """Python's audit hook sees every file opened; while requests are served (after the
    first of each kind has imported what it needs), none is, not even the model file,
    which is gone by then."""
    copy = tmp_path / "model.npz"
    shutil.copy(model_path, copy)
    requests = [
        ("post", "/predict", {"json": {"pixels": np.eye(28).tolist()}}),
        ("post", "/predict", {"files": {"file": ("../../x.png", _png(_seven()), "image/png")}}),
        ("post", "/predict", {"content": _png(_seven()), "headers": {"content-type": "image/png"}}),
        ("post", "/predict", {"content": b"junk", "headers": {"content-type": "image/png"}}),
        ("get", "/", {}), ("get", "/app.js", {}), ("get", "/model", {}), ("get", "/x/../y", {}),
    ]  # fmt: skip
    opened: list = []
    watching = threading.Event()
    sys.addaudithook(
        lambda event, args: watching.is_set() and event == "open" and opened.append(args)
    )
    with TestClient(create_app(copy, "cpu")) as c:
        for method, url, kwargs in requests:  # warm-up: lazy imports open module files
            getattr(c, method)(url, **kwargs)
        copy.unlink()
        watching.set()
        try:
            codes = [
                getattr(c, method)(url, **kwargs).status_code for method, url, kwargs in requests
            ]
        finally:
            watching.clear()
    assert codes == [200, 200, 200, 400, 200, 200, 200, 404]
    assert opened == []
    assert not (tmp_path.parent / "x.png").exists()


def test_a_fault_answers_500_in_one_line_and_the_server_goes_on(model_path, monkeypatch):
    app = create_app(model_path, "cpu")
    real = app.state.recogniser.probabilities
    calls = []

    def flaky(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("a fault deep inside\nwith a second line")
        return real(images)

    app.state.batcher.forward = flaky
    with TestClient(app, raise_server_exceptions=False) as c:
        bad = c.post("/predict", json={"pixels": np.eye(28).tolist()})
        assert bad.status_code == 500
        assert bad.json() == {"error": "internal error (RuntimeError); the server goes on serving"}
        assert c.post("/predict", json={"pixels": np.eye(28).tolist()}).status_code == 200


# -------------------------------------------------------------------------------------------
# batching
# -------------------------------------------------------------------------------------------


def test_concurrent_requests_share_forward_passes_and_each_gets_its_rows():
    def forward(x):
        return x.reshape(len(x), -1)[:, :2] * 2  # rows stay tied to their request

    async def run():
        batcher = Batcher(forward, max_batch=64, window=0.05)
        await batcher.start()
        inputs = [np.full((1 + i % 3, 2, 2), float(i)) for i in range(30)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.stop()
        return batcher, inputs, outs

    batcher, inputs, outs = asyncio.run(run())
    for x, out in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(out, np.full((len(x), 2), 2.0 * x[0, 0, 0]))
    assert batcher.images == sum(len(x) for x in inputs)
    assert batcher.passes < 30 and batcher.passes >= batcher.images / 64


def test_no_forward_pass_holds_more_than_max_batch_images():
    """A request was taken into a pass before its size was checked: 200 images and a
    256-image request made one pass of 456."""
    sizes = []

    def forward(x):
        sizes.append(len(x))
        return x.reshape(len(x), -1)[:, :1]

    async def run():
        batcher = Batcher(forward, max_batch=256, window=0.05)
        await batcher.start()
        inputs = [np.zeros((200, 1, 1)), np.ones((256, 1, 1)), np.full((40, 1, 1), 2.0)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.stop()
        return inputs, outs

    inputs, outs = asyncio.run(run())
    assert max(sizes) <= 256 and sum(sizes) == 496
    for x, out in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(out, x.reshape(len(x), 1))


def test_a_full_queue_refuses_at_once_and_a_failed_pass_fails_only_its_requests():
    gate = threading.Event()
    calls = []

    def forward(x):
        calls.append(len(x))
        gate.wait(10)
        if len(calls) == 1:
            raise ValueError("first pass fails")
        return x

    async def run():
        batcher = Batcher(forward, max_batch=1, window=0.0, max_queue=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.zeros((1, 1))))
        await asyncio.sleep(0.05)  # the worker holds the first request in its pass
        queued = [asyncio.ensure_future(batcher.submit(np.ones((1, 1)))) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Busy, match="busy"):
            await batcher.submit(np.ones((1, 1)))
        gate.set()
        with pytest.raises(ValueError, match="first pass"):
            await first
        rest = await asyncio.gather(*queued)
        await batcher.stop()
        return rest

    assert [r.tolist() for r in asyncio.run(run())] == [[[1.0]], [[1.0]]]


# -------------------------------------------------------------------------------------------
# the command: bad input, and the real server
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,says",
    [
        (["serve", "missing.npz"], "no such model file"),
        (["serve", "MODEL", "--port", "99999"], "port number"),
        (["serve", "MODEL", "--host", "no-such-host.invalid"], "--host"),
    ],
)
def test_serve_refuses_bad_input_in_one_line(model_path, tmp_path, capsys, argv, says):
    argv = [
        str(model_path) if a == "MODEL" else str(tmp_path / a) if a.endswith(".npz") else a
        for a in argv
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def _start(model_path, *extra) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp_xp", "serve", str(model_path), "--port", "0", "--device",
         "cpu", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    line = proc.stdout.readline()  # blocks until the server listens (or the process ends)
    found = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
    if not found:
        proc.kill()
        pytest.fail(f"no address printed: {line!r} {proc.stderr.read()}")
    return proc, found.group(1)


def test_the_real_server_answers_refuses_and_stops_cleanly_on_sigterm(model_path):
    import httpx

    proc, address = _start(model_path)
    try:
        with httpx.Client(base_url=address, timeout=30) as http:
            assert http.get("/health").json()["status"] == "ok"
            seven = http.post("/predict", content=_png(_seven()),
                              headers={"content-type": "image/png"})  # fmt: skip
            assert seven.status_code == 200 and seven.json()[0]["digit"] == 7
            huge = http.post("/predict", content=b"x" * (9 * 2**20),
                             headers={"content-type": "image/png"})  # fmt: skip
            assert huge.status_code == 413
            assert (
                http.post("/predict", content=b"{", headers={"content-type": JSON}).status_code
                == 400
            )
            assert http.post("/predict", content=_png_header(10**5, 10**5),
                             headers={"content-type": "image/png"}).status_code == 400  # fmt: skip
            assert http.get("/").text.startswith("<!doctype html>")
            assert http.get("/health").json()["images"] >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped (SIGTERM)" in out and "Traceback" not in err


def test_the_real_server_stops_cleanly_on_ctrl_c(model_path):
    proc, address = _start(model_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped (SIGINT)" in out and "Traceback" not in err


def test_a_port_in_use_is_one_line_and_exit_2(model_path):
    proc, address = _start(model_path)
    try:
        port = address.rsplit(":", 1)[1].strip("/")
        again = subprocess.run(
            [sys.executable, "-m", "mlp_xp", "serve", str(model_path), "--port", port],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert again.returncode == 2
    assert "cannot listen on" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_the_load_script_sends_its_mix_and_counts_no_error(model_path, capsys):
    from .helpers import load_module

    script = load_module(ROOT / "scripts" / "load_serve.py")
    result = script.main([str(model_path), "--requests", "60", "--concurrency", "8",
                          "--hostile", "0.5"])  # fmt: skip
    assert result["errors"] == 0 and result["server_exit"] == 0
    assert sum(k["count"] for k in result["kinds"].values()) == 60
    assert {"json 28x28", "png drawing", "image bomb"} <= set(result["kinds"])
    assert result["p50_ms"] <= result["p99_ms"] and result["mean_batch"] >= 1
    assert "60 requests at 8 concurrent, 50% hostile: 0 errors" in capsys.readouterr().out
