"""The draw-a-digit page in a real browser: headless Chromium (Debian's ``chromium``)
driven by Playwright, against ``mlp-xp serve`` running in a subprocess. Digits are drawn
as mouse strokes on the canvas; the page must show the digit, its top 3, and the 28x28
image the server says the network saw.

Marked ``browser`` (left out of the default run); ``.ci/run`` installs Chromium and
Playwright and runs it with ``MLP_XP_REQUIRE_BROWSER=1``, which turns a missing browser
into a failure. ``MLP_XP_SCREENSHOT=FILE`` saves the page with its answer to a 7 there
(``docs/serve.png``).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal

import numpy as np
import pytest

pytestmark = pytest.mark.browser

SEVEN = [(60, 60), (220, 60), (200, 110), (170, 170), (140, 240)]
ONE = [(150, 40), (146, 140), (142, 240)]


def _chromium() -> str:
    path = os.environ.get("MLP_XP_CHROMIUM") or shutil.which("chromium")
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright for Python is not installed (pip install playwright)"
    if reason is None and not path:
        reason = "no chromium executable (apt-get install chromium, or set MLP_XP_CHROMIUM)"
    if reason:
        if os.environ.get("MLP_XP_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(reason + " (required by MLP_XP_REQUIRE_BROWSER)")
        pytest.skip(reason)
    return str(path)


@pytest.fixture(scope="module")
def server(trained_run):
    from .test_serve import _start

    proc, address = _start(trained_run / "model.npz")
    yield address
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root cannot use the sandbox
        browser = p.chromium.launch(executable_path=executable, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, server):
    page = browser.new_page(viewport={"width": 900, "height": 620})
    page.goto(server)
    yield page
    page.close()


def _draw(page, points) -> None:
    """One stroke through ``points`` (canvas pixels), with the mouse."""
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=8)
    page.mouse.up()


def _answer(page) -> dict:
    page.wait_for_selector("body[data-state=answered]")
    page.wait_for_function("document.getElementById('note').textContent !== 'thinking\u2026'")
    seen = page.evaluate(
        "Array.from(document.getElementById('seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))"
    )
    return {
        "digit": page.locator("#answer").text_content(),
        "top3": [int(d) for d in page.locator("#top3 li").evaluate_all(
            "rows => rows.map(r => r.dataset.digit)")],
        "seen": np.array(seen).reshape(28, 28),
    }  # fmt: skip


def _server_answer(page, server) -> dict:
    """What the API says of the canvas as it is now (its PNG, sent by Python)."""
    import httpx

    url = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    response = httpx.post(server + "predict", content=png, headers={"content-type": "image/png"})
    return response.json()[0]


def test_the_page_shows_the_model(page):
    page.wait_for_function("document.getElementById('model').textContent.includes('784-300')")
    summary = page.locator("#model").text_content()
    assert "model.npz" in summary and "parameters" in summary and "numpy" in summary


def test_a_seven_drawn_with_the_mouse_is_a_seven(page, server, tmp_path):
    page.click("#clear")
    _draw(page, SEVEN)
    shown = _answer(page)
    assert shown["digit"] == "7" and shown["top3"][0] == 7 and len(shown["top3"]) == 3
    api = _server_answer(page, server)
    assert api["digit"] == 7
    np.testing.assert_array_equal(shown["seen"], np.array(api["image"]))  # the 28x28 shown
    assert shown["seen"].max() == 255 and shown["seen"][0].max() == 0  # bright ink, dark edge
    page.screenshot(path=os.environ.get("MLP_XP_SCREENSHOT") or str(tmp_path / "serve.png"))


def test_a_one_after_clear_is_a_one(page, server):
    page.click("#clear")
    assert page.locator("#answer").text_content() == "?"
    assert page.locator("#top3 li").count() == 0
    _draw(page, ONE)
    shown = _answer(page)
    assert shown["digit"] == "1" and shown["top3"][0] == 1
    np.testing.assert_array_equal(shown["seen"], np.array(_server_answer(page, server)["image"]))


def test_an_uploaded_photo_is_answered(page, tmp_path):
    from .test_serve import _png, _seven

    (tmp_path / "seven.png").write_bytes(_png(_seven()))
    page.click("#clear")
    page.set_input_files("#upload", str(tmp_path / "seven.png"))
    assert _answer(page)["digit"] == "7"


def test_a_one_drawn_with_a_finger_is_a_one(browser, server):
    """Touch: Chromium's own touch events (through the DevTools protocol, on a page with a
    touch screen), which the page receives as pointer events of type ``touch``."""
    context = browser.new_context(has_touch=True, viewport={"width": 900, "height": 620})
    page = context.new_page()
    page.goto(server)
    page.evaluate(
        "window.kinds = []; document.getElementById('pad')"
        ".addEventListener('pointerdown', (e) => window.kinds.push(e.pointerType))"
    )
    box = page.locator("#pad").bounding_box()
    touches = [(box["x"] + x, box["y"] + y) for x, y in ONE]
    path = [touches[0]] + [
        (a[0] + (b[0] - a[0]) * t / 8, a[1] + (b[1] - a[1]) * t / 8)
        for a, b in zip(touches, touches[1:])  # noqa: B905 -- consecutive pairs
        for t in range(1, 9)
    ]
    cdp = context.new_cdp_session(page)
    kinds = ["touchStart"] + ["touchMove"] * (len(path) - 1)
    for kind, (x, y) in zip(kinds, path, strict=True):
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    shown = _answer(page)
    kinds_seen = page.evaluate("window.kinds")
    context.close()
    assert kinds_seen == ["touch"]  # one stroke, from a finger
    assert shown["digit"] == "1" and shown["seen"].max() == 255
