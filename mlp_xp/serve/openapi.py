"""The API's OpenAPI 3.1 description (``GET /openapi.json``)."""

from __future__ import annotations

__all__ = ["openapi"]

_ERROR = {
    "description": "one line saying what was wrong",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}

_TOP = {
    "type": "object",
    "properties": {"digit": {"type": "integer"}, "probability": {"type": "number"}},
}

_ANSWER = {
    "type": "object",
    "description": "the fields of `mlp-xp predict --json`; digit and probability are null "
    "and `note` says why when the image holds no digit or is not plausibly one; `image` "
    "(uploads only) is the 28x28 image the network saw after predict's conversion of a photo",
    "properties": {
        "input": {"type": "string"},
        "digit": {"type": ["integer", "null"]},
        "probability": {"type": ["number", "null"]},
        "top3": {"type": "array", "items": _TOP},
        "note": {"type": "string"},
        "evidence": {"type": "object", "description": "what predict's digit check measured"},
        "image": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
    },
    "required": ["input", "digit", "probability", "top3"],
}


def _predict(max_body: int) -> dict:
    image = {"type": "string", "format": "binary"}
    return {
        "post": {
            "summary": "Recognise digits: an image file, or 28x28 pixels as JSON",
            "description": f"Bodies over {max_body:,} bytes are refused with 413.",
            "requestBody": {
                "required": True,
                "content": {
                    "image/png": {"schema": image},
                    "image/jpeg": {"schema": image},
                    "multipart/form-data": {
                        "schema": {"type": "object", "properties": {"file": image}}
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "pixels": {
                                    "description": "one 28x28 image (or 784 values) or a "
                                    "list of them; 0-255 values or fractions in [0, 1], "
                                    "bright ink on a dark background (MNIST's convention)",
                                    "type": "array",
                                }
                            },
                            "required": ["pixels"],
                        }
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "one answer per image",
                    "content": {
                        "application/json": {"schema": {"type": "array", "items": _ANSWER}}
                    },
                },
                "400": _ERROR,
                "413": _ERROR,
                "415": _ERROR,
                "503": _ERROR,
            },
        }
    }


def openapi(max_body: int) -> dict:
    """The description, with the server's body limit."""
    from .. import __version__

    json_ok = lambda what: {
        "200": {"description": what, "content": {"application/json": {"schema": {}}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlp-xp serve", "version": __version__},
        "paths": {
            "/predict": _predict(max_body),
            "/model": {
                "get": {
                    "summary": "The model's summary",
                    "responses": json_ok("layers, recorded accuracy, device, calibration"),
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "responses": json_ok(
                        "status ok, with the forward passes run and the images they held"
                    ),
                }
            },
            "/": {
                "get": {
                    "summary": "The draw-a-digit page",
                    "responses": {"200": {"description": "HTML"}},
                }
            },
        },
    }
