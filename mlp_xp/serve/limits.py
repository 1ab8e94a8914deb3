"""The request body limit, as ASGI middleware in front of the application.

A request that declares a ``Content-Length`` over the limit is answered 413 before its body
is read; one that streams more than the limit (chunked, or a lying length) fails as soon
as it passes it: the application's ``receive`` raises :class:`BodyTooLarge`, which the
application answers with 413.
"""

from __future__ import annotations

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """A request body passed the server's limit."""


class BodyLimit:
    """Wraps an ASGI ``app`` so no HTTP request body over ``max_body`` bytes reaches it."""

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    @property
    def state(self):  # the wrapped application's state, for tests and the runner
        return self.app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is over the limit of {self.max_body:,} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return await _refuse(send, message)
        seen = 0

        async def limited():
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(message)
            return event

        await self.app(scope, limited, send)


async def _refuse(send, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
