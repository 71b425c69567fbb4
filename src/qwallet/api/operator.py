"""The operator API (``/api/*``) for the operator's other systems: bearer API keys.

``POST /api/sessions`` creates a game session (spec §2.1 b). Errors use the contract's error body:
401 (103) without a valid key, 400 (101) for a malformed body or an unknown player or partner.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from qwallet.api.requests import NO_NUL
from qwallet.clock import Clock
from qwallet.domain.errors import ErrorCode
from qwallet.service import sessions
from qwallet.service.credentials import hash_api_key
from qwallet.service.partners import OperatorError
from qwallet.settings import Settings
from qwallet.store.factory import Store

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    playerId: Name
    partner: Name
    gameCode: Name | None = None
    language: Annotated[str, msgspec.Meta(min_length=2, max_length=8, pattern=NO_NUL)] | None = None


_decode_session_request = msgspec.json.Decoder(SessionRequest).decode
_encode = msgspec.json.Encoder().encode


def error_response(status: int, code: ErrorCode, description: str) -> Response:
    return Response(
        _encode({"errorCode": int(code), "errorDescription": description}),
        status_code=status,
        media_type="application/json",
    )


async def operator_name(request: Request, store: Store) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip() or len(key) > 256:
        return None
    return await store.find_operator_key(hash_api_key(key.strip()))


class OperatorAPI:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self._store, self._settings, self._clock = store, settings, clock

    async def create_session(self, request: Request) -> Response:
        if await operator_name(request, self._store) is None:
            return error_response(401, ErrorCode.NOT_AUTHORIZED, "Missing or invalid API key.")
        body = await request.body()
        if len(body) > self._settings.max_body_bytes:
            return error_response(413, ErrorCode.MALFORMED_REQUEST, "Request body is too large.")
        try:
            payload = _decode_session_request(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return error_response(400, ErrorCode.MALFORMED_REQUEST, f"Invalid request: {error}.")
        try:
            issued = await sessions.create_session(
                self._store,
                player_id=payload.playerId,
                partner=payload.partner,
                now_ms=self._clock.now_ms(),
                idle_timeout_s=self._settings.session_idle_timeout_s,
                lifetime_s=self._settings.session_lifetime_s,
                game_code=payload.gameCode or sessions.DEFAULT_GAME,
                language=payload.language,
            )
        except OperatorError as error:
            return error_response(400, ErrorCode.MALFORMED_REQUEST, str(error))
        return Response(_encode(issued.as_json()), status_code=201, media_type="application/json")
