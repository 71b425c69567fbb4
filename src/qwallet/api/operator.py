"""The operator API's (``/api/*``) authentication: bearer API keys of the operator's other
systems, and the contract's error body its endpoints answer with. The endpoints are their own
modules: ``qwallet.api.sessions`` (``POST /api/sessions``) and ``qwallet.api.studio`` (fault
rules, protocol reports). Without a valid key they answer 401 (103).

Failed keys are throttled per client address (the trusted-proxy rule of ``qwallet.api.auth``)
with a budget in the database (``qwallet.service.failure_budgets``, scope ``operator_api``),
shared by every server process: the Wallet API's ``auth_failure_rps`` / ``auth_failure_burst``.
A presented key takes a token before it is looked up and gives it back when it is valid; an
address whose budget is empty gets 429 (104) with ``Retry-After`` and no lookup at all.

Every change made through it is an operator use case of ``qwallet.service`` called with the actor
``api-key:<key name>`` (``qwallet.service.audit.api_key_actor``): the change and its audit entry
are written in one transaction.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from qwallet.api.auth import ClientAddressResolver, forwarded_for
from qwallet.clock import Clock
from qwallet.domain.errors import ErrorCode
from qwallet.service import failure_budgets
from qwallet.service.credentials import hash_api_key
from qwallet.settings import Settings
from qwallet.store.factory import Store

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
