"""The operator API (``/api/*``) for the operator's other systems: bearer API keys.

``POST /api/sessions`` creates a game session (spec §2.1 b). Errors use the contract's error body:
401 (103) without a valid key, 400 (101) for a malformed body or an unknown player or partner.

Failed keys are throttled per client address (the trusted-proxy rule of ``qwallet.api.auth``)
with a budget in the database (``qwallet.service.failure_budgets``, scope ``operator_api``),
shared by every server process: the Wallet API's ``auth_failure_rps`` / ``auth_failure_burst``.
A presented key takes a token before it is looked up and gives it back when it is valid; an
address whose budget is empty gets 429 (104) with ``Retry-After`` and no lookup at all.

Every change made here is an operator use case of ``qwallet.service`` called with the actor
``api-key:<key name>``: the session and its audit entry are written in one transaction.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from qwallet.api.auth import ClientAddressResolver, forwarded_for
from qwallet.api.requests import NO_NUL
from qwallet.clock import Clock
from qwallet.domain.errors import ErrorCode
from qwallet.service import audit, failure_budgets, sessions
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


FAILURE_SCOPE = "operator_api"
MAX_API_KEY_CHARS = 256


def error_response(
    status: int, code: ErrorCode, description: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _encode({"errorCode": int(code), "errorDescription": description}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def presented_key(request: Request) -> str | None:
    """The bearer key of the request, or None when there is none worth looking up."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > MAX_API_KEY_CHARS:
        return None
    return key


class OperatorAPI:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self._store, self._settings, self._clock = store, settings, clock
        self._addresses = ClientAddressResolver(settings.trusted_proxies)
        self._budget = failure_budgets.Budget.per_second(
            settings.auth_failure_rps, settings.auth_failure_burst
        )

    def _budget_key(self, request: Request) -> str:
        address = self._addresses.resolve(
            request.client.host if request.client else None, forwarded_for(request.scope["headers"])
        )
        return f"a:{address if address is not None else 'unknown'}"

    async def _authenticate(self, request: Request) -> Response | str:
        """The key's name (the actor of what the request changes) when the request carries a
        valid key, else the refusal (401 or 429)."""
        unauthorized = error_response(401, ErrorCode.NOT_AUTHORIZED, "Missing or invalid API key.")
        key = presented_key(request)
        if key is None:  # nothing to look up: nothing to throttle
            return unauthorized
        budget_key = self._budget_key(request)
        wait_s = await failure_budgets.take(
            self._store, FAILURE_SCOPE, budget_key, self._budget, self._clock.now_ms()
        )
        if wait_s:
            return error_response(
                429,
                ErrorCode.RATE_LIMITED,
                f"Too many failed API keys from this address; retry after {wait_s} s.",
                {"Retry-After": str(wait_s)},
            )
        name = await self._store.find_operator_key(hash_api_key(key))
        if name is None:
            return unauthorized
        await failure_budgets.give_back(self._store, FAILURE_SCOPE, budget_key, self._budget)
        return name

    async def authenticate(self, request: Request) -> Response | str:
        """For the other operator endpoints (``qwallet.api.studio``): the same check."""
        return await self._authenticate(request)

    async def create_session(self, request: Request) -> Response:
        key_name = await self._authenticate(request)
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
