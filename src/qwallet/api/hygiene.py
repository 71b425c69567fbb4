"""Request hygiene for every page and API route outside ``/wallet/*``, before any handler runs.

A plain ASGI middleware in front of the Starlette application:

- **U+0000** anywhere in the decoded path or query string → 400 at once. PostgreSQL cannot store
  or compare it in a text value (it raised a 500 from deep inside a query); no route has a use
  for it, so it is refused in this one place. Form fields are checked where the form is parsed
  (``qwallet.web.security.require_csrf``).
- **Body size**: a ``Content-Length`` above ``max_body_bytes`` → 413 before a byte of the body is
  read; a body without one (chunked) is counted as it streams and refused with 413 as soon as it
  goes over. Nothing ever buffers more than the cap, whatever a handler does with the body (form
  parsing included). The Wallet API has its own limit (``qwallet.api.wallet``).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"Request body is larger than {max_body_bytes} bytes.")


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"cache-control", b"no-store"),
                # The body may still be on its way: do not read it to keep the connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def has_nul(scope: Scope) -> bool:
    path = scope.get("path", "")
    query = scope.get("query_string", b"")
    return "\x00" in path or b"\x00" in unquote_to_bytes(query)


class RequestHygiene:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if has_nul(scope):
            await _plain(send, 400, "The path or query string must not contain U+0000.")
            return
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _plain(send, 400, "Invalid Content-Length.")
                    return
        limit = self.max_body_bytes
        if declared is not None and declared > limit:
            await _plain(send, 413, f"Request body is larger than {limit} bytes.")
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            # Normally the application's exception handler has answered already (the handler
            # was reading the body); this covers a read outside any handler.
            if started:
                raise
            await _plain(send, 413, f"Request body is larger than {limit} bytes.")


__all__ = ["BodyTooLarge", "RequestHygiene", "has_nul"]
