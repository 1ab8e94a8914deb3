"""``mlp-xp serve``: the draw-a-digit page and an HTTP API for one model file (the ``serve``
extra: Starlette, served by Uvicorn).

:mod:`.recogniser` reads the model once and turns request bodies into what ``predict``
answers; :mod:`.batching` gathers concurrent requests into one forward pass;
:mod:`.app` is the ASGI application (routes, limits, errors); :mod:`.runner` binds the
socket and runs Uvicorn. The page's HTML, script and style are package data, served from
memory, so the page works offline and no request path reaches the file system.
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def create_app(model_path, device=None, **limits):
    """The ASGI application serving ``model_path`` (see :func:`mlp_xp.serve.app.create_app`)."""
    from .app import create_app as create

    return create(model_path, device, **limits)


def serve(model_path, host="127.0.0.1", port=8000, device=None, **kwargs):
    """Serve ``model_path`` until Ctrl-C or SIGTERM (see :func:`mlp_xp.serve.runner.serve`)."""
    from .runner import serve as run

    return run(model_path, host, port, device, **kwargs)
