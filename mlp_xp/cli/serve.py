"""``mlp-xp serve``: the draw-a-digit page and the HTTP API (:mod:`mlp_xp.serve`)."""

from __future__ import annotations

import importlib.util

from ..errors import ConfigError
from .console import resolve


def cmd_serve(args) -> int:
    if not all(importlib.util.find_spec(name) for name in ("starlette", "uvicorn")):
        raise ConfigError(
            "serve needs Starlette and Uvicorn: pip install '.[serve]' in the package's folder"
        )
    from ..serve import serve

    return serve(resolve(args.model), args.host, args.port, args.device)
