"""Small pieces shared by the kit's two ASGI apps: a bounded body reader and Basic auth."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import Receive, Send

__all__ = ["BodyTooLarge", "check_basic_auth", "lifespan", "read_body"]


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing to buffer more than ``max_bytes`` (a declared or real size)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def check_basic_auth(header: str | None, credentials: Iterable[tuple[str, str]]) -> bool:
    """True if ``header`` carries one of ``credentials``; constant time per pair compared.

    Several pairs allow rotation with an overlap: the old and the new both work until the old
    one is removed from the configuration.
    """
    if header is None:
        return False
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    username, separator, password = decoded.partition(b":")
    if not separator:
        return False
    accepted = False
    for expected_username, expected_password in credentials:
        # Both halves are always compared, so timing tells nothing about which one was wrong.
        user_ok = hmac.compare_digest(username, expected_username.encode())
        password_ok = hmac.compare_digest(password, expected_password.encode())
        accepted |= user_ok & password_ok
    return accepted


async def lifespan(receive: Receive, send: Send) -> None:
    # Mounted standalone under uvicorn, the app must still answer the lifespan protocol.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
