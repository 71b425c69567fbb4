"""``POST /api/sessions``: the operator's systems create a game session (spec §2.1 b).

Authentication and its throttle are the operator API's (``qwallet.api.operator``). Errors use the
contract's error body: 401 (103) without a valid key, 413 (101) for a body above
``max_body_bytes``, 400 (101) for a malformed body or an unknown player or partner; nothing is
written then. The session and its audit entry (actor ``api-key:<key name>``) are written in one
transaction by the use case ``qwallet.service.sessions.create_session``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from qwallet.api.operator import OperatorAPI, error_response
from qwallet.api.requests import NO_NUL
from qwallet.clock import Clock
from qwallet.domain.errors import ErrorCode
from qwallet.service import audit, sessions
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


class SessionsAPI:
    """Built with the app; ``start`` attaches the store and the operator API's authentication."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings, self._clock = settings, clock
        self._store: Store | None = None
        self._operator: OperatorAPI | None = None

    def start(self, store: Store, operator: OperatorAPI) -> None:
        self._store, self._operator = store, operator

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/sessions", self.create_session, methods=["POST"])]

    async def create_session(self, request: Request) -> Response:
        assert self._store is not None and self._operator is not None
        key_name = await self._operator.authenticate(request)
        if isinstance(key_name, Response):
            return key_name
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
                operator=audit.api_key_actor(key_name),
            )
        except OperatorError as error:
            return error_response(400, ErrorCode.MALFORMED_REQUEST, str(error))
        return Response(_encode(issued.as_json()), status_code=201, media_type="application/json")


__all__ = ["SessionRequest", "SessionsAPI"]
