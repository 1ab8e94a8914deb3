"""The ASGI application: the page, ``POST /predict``, ``GET /model``, ``GET /health`` and
``GET /openapi.json``.

Safe by default: a body over ``max_body`` bytes is refused with 413 (by its declared length
before anything is read, else as soon as the stream passes it); image files get
``predict``'s decoding limits; malformed JSON, images or shapes get a 4xx with one clear
``{"error": ...}`` line; no route takes a path from the request, and the page's files are
package data held in memory. An unexpected fault answers 500 with one line, no traceback,
and the server goes on serving.
"""

from __future__ import annotations

import contextlib
import json
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import DataError
from .batching import Batcher, Busy
from .limits import BodyLimit, BodyTooLarge
from .openapi import openapi
from .recogniser import Recogniser, decode_upload, pixels_from_json

__all__ = ["create_app", "MAX_BODY"]

#: The largest request body (bytes): a phone photo fits, an upload of a film does not.
MAX_BODY = 8 * 2**20

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


_BLANK = np.zeros((28, 28), dtype=int).tolist()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _predict(request: Request) -> Response:
    recogniser: Recogniser = request.app.state.recogniser
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    preview = source = None
    if kind == "application/json":
        body = await request.body()  # parsed off the event loop: up to 8 MiB of lists
        images = await run_in_threadpool(lambda: pixels_from_json(_json_pixels(body)))
        labels = ["pixels"] if len(images) == 1 else [f"pixels[{i}]" for i in range(len(images))]
    elif kind.startswith("image/") or kind in ("multipart/form-data", "application/octet-stream"):
        data, name = await _upload(request, kind)
        async with request.app.state.decoding:  # two decodes at most: memory stays bounded
            decoded = await run_in_threadpool(decode_upload, data, name)
        if decoded is None:  # blank: predict's answer, and no forward pass
            return JSONResponse([{**recogniser.answers(None, None, [name])[0], "image": _BLANK}])
        preview, info = decoded
        images, labels, source = preview[None] / 255.0, [name], [info]
    else:
        return _error(415, 'send an image file (PNG/JPEG) or JSON {"pixels": [...]}')
    probs = await request.app.state.batcher.submit(images)
    answers = recogniser.answers(images, probs, labels, source)
    if preview is not None:
        answers[0]["image"] = preview.tolist()  # the 28x28 the network saw
    return JSONResponse(answers)


def _json_pixels(body: bytes):
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise DataError("the body is not valid JSON") from None
    if not isinstance(value, dict) or "pixels" not in value:
        raise DataError('expected a JSON object {"pixels": [...]}')
    return value["pixels"]


async def _upload(request: Request, kind: str) -> tuple[bytes, str]:
    """The bytes and name of an uploaded image: a raw body, or the ``file`` of a form."""
    if kind != "multipart/form-data":
        return await request.body(), "upload"
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise DataError("the form has no 'file' field holding an image")
    name = str(upload.filename or "upload")[:100]
    return await upload.read(), name


async def _model(request: Request) -> Response:
    return JSONResponse(request.app.state.recogniser.summary)


async def _health(request: Request) -> Response:
    batcher: Batcher = request.app.state.batcher
    return JSONResponse({"status": "ok", "passes": batcher.passes, "images": batcher.images})


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi(request.app.state.max_body))


def _static_routes() -> list[Route]:
    """The page's files, read once from the package: no request path reaches the disk."""
    folder = resources.files("mlp_xp.serve") / "static"
    routes = []
    for url, (name, media) in _STATIC.items():
        body = (folder / name).read_bytes()

        async def page(request: Request, body=body, media=media) -> Response:
            return Response(body, media_type=media, headers={"cache-control": "no-cache"})

        routes.append(Route(url, page, methods=["GET"]))
    return routes


async def _data_error(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc).splitlines()[0] if str(exc) else "bad request")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail))


async def _too_large(request: Request, exc: Exception) -> Response:
    return _error(413, str(exc))


async def _busy(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"retry-after": "1"})


async def _fault(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error ({type(exc).__name__}); the server goes on serving")


def create_app(
    model_path,
    device=None,
    *,
    max_body: int = MAX_BODY,
    max_batch: int = 256,
    window: float = 0.002,
    max_queue: int = 1024,
) -> BodyLimit:
    """The application serving the model file at ``model_path`` on ``device``.

    The model is read once, here (:func:`mlp_xp.load_model`: the safe reader); requests'
    images are batched (:class:`~mlp_xp.serve.batching.Batcher`: ``max_batch`` images,
    ``window`` seconds, ``max_queue`` waiting requests); bodies over ``max_body`` bytes
    get 413. The batcher runs in the app's lifespan (Uvicorn's, or ``with TestClient(app)``).
    """
    import anyio

    recogniser = Recogniser(model_path, device)
    batcher = Batcher(recogniser.probabilities, max_batch, window, max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.decoding = anyio.Semaphore(2)
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    routes = [
        Route("/predict", _predict, methods=["POST"]),
        Route("/model", _model, methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        *_static_routes(),
    ]
    handlers = {
        DataError: _data_error,
        HTTPException: _http_error,
        BodyTooLarge: _too_large,
        Busy: _busy,
        Exception: _fault,
    }
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.recogniser, app.state.batcher, app.state.max_body = recogniser, batcher, max_body
    return BodyLimit(app, max_body)
