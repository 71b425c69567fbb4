"""The Wallet API (spec §1) as a plain ASGI application: the hot path.

Deliberately not a Starlette route: one request passes through exactly this code — headers read
once, Basic auth from the cache, allow-list, bounded body read, strict decode, one store call,
one encoded answer — which keeps the per-request cost low enough for the throughput targets.

Order of checks: method and endpoint (405/404) → failed-authentication limit per client address
(429, only for credentials not already verified) → credentials (401) → client address (403) →
``Content-Type`` (400) → body size (413) → body (400: not JSON, wrong fields, duplicate keys) →
the use case (business errors as 200).
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable

from msgspec import UNSET
from starlette.types import Receive, Scope, Send

from qwallet.api import metrics, requests, responses
from qwallet.api.auth import (
    ClientAddressResolver,
    FailedAuthLimiter,
    PartnerAuthenticator,
    address_allowed,
)
from qwallet.api.ratelimit import RateLimiter
from qwallet.api.requests import BeginRequest, ConfirmRequest, RollbackRequest, TokenRequest
from qwallet.clock import Clock
from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.domain.money import CurrencyRegistry
from qwallet.domain.transactions import Kind
from qwallet.settings import Settings
from qwallet.store.port import BeginCall, ConfirmCall, Partner, RollbackCall, WalletStore

log = logging.getLogger("qwallet.api")

Handler = Callable[[Partner, bytes], Awaitable[bytes]]

PREFIX = "/wallet/"
MAX_REQUEST_ID_LENGTH = 128


class HttpError(Exception):
    """A transport-level refusal with its own HTTP status (401, 403, 404, 405, 413, 429)."""

    def __init__(
        self, status: int, code: ErrorCode, description: str, retry_after_s: int = 0
    ) -> None:
        self.status, self.code, self.description = status, code, description
        self.retry_after_s = retry_after_s


def rate_limited(retry_after_s: int, what: str) -> HttpError:
    return HttpError(
        429,
        ErrorCode.RATE_LIMITED,
        f"Rate limited ({what}); retry the same call after {retry_after_s} s.",
        retry_after_s,
    )


def request_id_from(value: bytes | None) -> str:
    if value and len(value) <= MAX_REQUEST_ID_LENGTH:
        text = value.decode("latin-1")
        if text.isprintable() and text.isascii():
            return text
    return uuid.uuid4().hex


class WalletAPI:
    def __init__(
        self,
        store: WalletStore,
        settings: Settings,
        clock: Clock,
        authenticator: PartnerAuthenticator,
        auth_failures: FailedAuthLimiter | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._auth = authenticator
        self._addresses = ClientAddressResolver(settings.trusted_proxies)
        self._currencies: CurrencyRegistry = settings.currency_registry
        self._max_body_bytes = settings.max_body_bytes
        self._max_balance = {c.code: c.max_balance_minor for c in settings.currencies}
        self._limits = RateLimiter(
            settings.rate_limit_partner_rps,
            settings.rate_limit_partner_burst,
            settings.rate_limit_player_rps,
            settings.rate_limit_player_burst,
        )
        # Shared with the partner reports (qwallet.api.partner_access) when the app passes it:
        # one budget per address whichever partner endpoint is being guessed at.
        self._auth_failures = (
            FailedAuthLimiter(settings.auth_failure_rps, settings.auth_failure_burst)
            if auth_failures is None
            else auth_failures
        )
        # TEST ONLY (QWALLET_TEST_CRASH_POINT=after_commit): die between commit and answer.
        self._crash_probability = (
            settings.test_crash_probability if settings.test_crash_point == "after_commit" else 0.0
        )
        self._handlers: dict[str, Handler] = {
            "verifySession": self._verify_session,
            "getBalance": self._get_balance,
            "withdraw": self._withdraw,
            "confirmWithdrawal": self._confirm_withdrawal,
            "rollbackWithdrawal": self._rollback_withdrawal,
            "deposit": self._deposit,
            "confirmDeposit": self._confirm_deposit,
            "rollbackDeposit": self._rollback_deposit,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers[name] = value  # later duplicates win; none of ours may repeat
        request_id = request_id_from(headers.get(b"x-request-id"))
        endpoint = scope["path"][len(PREFIX) :]
        status, code, body = 200, 0, b""
        retry_after_s = 0
        try:
            body = await self._dispatch(scope, receive, headers, endpoint)
            if self._crash_probability and random.random() < self._crash_probability:
                log.warning("test crash point after_commit: exiting", extra={"endpoint": endpoint})
                os._exit(70)
        except WalletError as error:
            status, code = error.code.http_status, int(error.code)
            body = responses.error_body(error, self._currencies, error.extra.get("currency"))
        except HttpError as error:
            status, code = error.status, int(error.code)
            body = responses.plain_error(error.code, error.description)
            retry_after_s = error.retry_after_s
        except Exception:
            log.exception(
                "unexpected failure", extra={"request_id": request_id, "endpoint": endpoint}
            )
            status, code = 500, int(ErrorCode.OTHER)
            body = responses.plain_error(
                ErrorCode.OTHER,
                f"Unexpected error (request {request_id}); retrying the same call is safe.",
            )
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        if status == 401:
            response_headers.append((b"www-authenticate", b'Basic realm="wallet", charset="UTF-8"'))
        elif status == 405:
            response_headers.append((b"allow", b"POST"))
        elif status == 429:
            response_headers.append((b"retry-after", str(retry_after_s).encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
        if endpoint not in self._handlers:
            endpoint = "unknown"
        metrics.observe(endpoint, code, time.perf_counter() - started)

    async def _dispatch(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes], endpoint: str
    ) -> bytes:
        handler = self._handlers.get(endpoint)
        if handler is None:
            raise HttpError(
                404, ErrorCode.MALFORMED_REQUEST, f"Unknown endpoint {scope['path']!r}."
            )
        if scope["method"] != "POST":
            raise HttpError(405, ErrorCode.MALFORMED_REQUEST, "Every Wallet API call is a POST.")
        authorization = headers.get(b"authorization")
        client = scope.get("client")
        address = None
        partner = self._auth.cached(authorization)
        if partner is None and self._auth.verified_before(authorization):
            # Verified before (its cache entry ran out: a store lookup re-checks it) or being
            # verified right now (join that): no scrypt of its own, so it is charged nothing.
            partner = await self._auth.authenticate(authorization)
            if partner is None:
                raise HttpError(401, ErrorCode.NOT_AUTHORIZED, "Missing or invalid credentials.")
        elif partner is None:
            # Not verified yet: this may run scrypt. Each client address has a budget of failed
            # authentications; the token is taken first and given back when the credentials hold.
            address = self._addresses.resolve(
                client[0] if client else None, headers.get(b"x-forwarded-for")
            )
            if wait := self._auth_failures.retry_after_s(self._auth_failures.acquire(address)):
                raise HttpError(
                    429,
                    ErrorCode.RATE_LIMITED,
                    f"Too many failed authentications from this address; retry after {wait} s.",
                    wait,
                )
            partner = await self._auth.authenticate(authorization)
            if partner is None:
                raise HttpError(401, ErrorCode.NOT_AUTHORIZED, "Missing or invalid credentials.")
            self._auth_failures.refund(address)
        if partner.ip_allow:
            if address is None:
                address = self._addresses.resolve(
                    client[0] if client else None, headers.get(b"x-forwarded-for")
                )
            if not address_allowed(address, partner.ip_allow):
                raise HttpError(
                    403,
                    ErrorCode.NOT_AUTHORIZED,
                    "Request refused: the client address is not on the partner's allow-list.",
                )
        if wait_s := self._limits.partner(partner.id):
            raise rate_limited(wait_s, "partner")
        if not requests.is_json_media_type(headers.get(b"content-type")):
            raise WalletError(
                ErrorCode.MALFORMED_REQUEST,
                "Content-Type must be application/json (optionally ; charset=utf-8).",
            )
        body = await self._read_body(receive, headers.get(b"content-length"))
        return await handler(partner, body)

    async def _read_body(self, receive: Receive, content_length: bytes | None) -> bytes:
        limit = self._max_body_bytes
        too_large = HttpError(
            413, ErrorCode.MALFORMED_REQUEST, f"Request body is larger than {limit} bytes."
        )
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise WalletError(ErrorCode.MALFORMED_REQUEST, "Client disconnected.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _limit_player(self, partner: Partner, token: str) -> None:
        if wait_s := self._limits.player(partner.id, token):
            raise rate_limited(wait_s, "player")

    # -- endpoints --------------------------------------------------------------------------

    async def _verify_session(self, partner: Partner, body: bytes) -> bytes:
        request = requests.decode(body, TokenRequest)
        self._limit_player(partner, request.token)
        view = await self._store.verify_session(partner.id, request.token, self._clock.now_ms())
        return responses.session_body(view, self._currencies)

    async def _get_balance(self, partner: Partner, body: bytes) -> bytes:
        request = requests.decode(body, TokenRequest)
        self._limit_player(partner, request.token)
        view = await self._store.get_balance(partner.id, request.token, self._clock.now_ms())
        return responses.balance_body(view, self._currencies)

    async def _begin(self, partner: Partner, body: bytes, kind: Kind) -> bytes:
        request = requests.decode(body, BeginRequest)
        self._limit_player(partner, request.token)
        amount_minor, currency = requests.amount_minor(request.amount, self._currencies)
        call = BeginCall(
            partner_id=partner.id,
            kind=kind,
            token=request.token,
            mm_transaction_id=request.mmTransactionId,
            amount_minor=amount_minor,
            currency=currency,
            description=None if request.txDescription is UNSET else request.txDescription,
            max_balance_minor=self._max_balance[currency],
            now_ms=self._clock.now_ms(),
        )
        try:
            result = await self._store.begin(call)
        except WalletError as error:
            error.extra.setdefault("currency", currency)
            raise
        return responses.money_body(result, self._currencies)

    async def _confirm(self, partner: Partner, body: bytes, kind: Kind) -> bytes:
        request = requests.decode(body, ConfirmRequest)
        self._limit_player(partner, request.token)
        amount_minor, currency = requests.amount_minor(request.amount, self._currencies)
        call = ConfirmCall(
            partner_id=partner.id,
            kind=kind,
            token=request.token,
            mm_transaction_id=request.mmTransactionId,
            amount_minor=amount_minor,
            currency=currency,
            now_ms=self._clock.now_ms(),
        )
        return responses.money_body(await self._store.confirm(call), self._currencies)

    async def _rollback(self, partner: Partner, body: bytes, kind: Kind) -> bytes:
        request = requests.decode(body, RollbackRequest)
        self._limit_player(partner, request.token)
        call = RollbackCall(
            partner_id=partner.id,
            kind=kind,
            token=request.token,
            mm_transaction_id=request.mmTransactionId,
            reason=None if request.rollbackReason is UNSET else request.rollbackReason,
            now_ms=self._clock.now_ms(),
        )
        return responses.money_body(await self._store.rollback(call), self._currencies)

    async def _withdraw(self, partner: Partner, body: bytes) -> bytes:
        return await self._begin(partner, body, Kind.WITHDRAWAL)

    async def _deposit(self, partner: Partner, body: bytes) -> bytes:
        return await self._begin(partner, body, Kind.DEPOSIT)

    async def _confirm_withdrawal(self, partner: Partner, body: bytes) -> bytes:
        return await self._confirm(partner, body, Kind.WITHDRAWAL)

    async def _confirm_deposit(self, partner: Partner, body: bytes) -> bytes:
        return await self._confirm(partner, body, Kind.DEPOSIT)

    async def _rollback_withdrawal(self, partner: Partner, body: bytes) -> bytes:
        return await self._rollback(partner, body, Kind.WITHDRAWAL)

    async def _rollback_deposit(self, partner: Partner, body: bytes) -> bytes:
        return await self._rollback(partner, body, Kind.DEPOSIT)
