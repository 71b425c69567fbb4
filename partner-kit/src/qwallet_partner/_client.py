"""``WalletClient``: a typed async client for the eight Wallet API endpoints (spec §1.5).

One method per endpoint, one HTTP request per call: the client never retries on its own, because
``withdraw`` and ``deposit`` must be sent once (spec §1.4). Retrying confirm/rollback is the
outbox's job, on the documented schedule.

The transport is httpx's: pass ``transport=`` (e.g. ``InMemoryWallet().transport``) to run
without a network.

HTTP 429 (code 104) raises ``RateLimitedError`` with the pause of the ``Retry-After`` header
(seconds or an HTTP date); the outbox waits at least that long before it sends again.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable
from datetime import UTC
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import msgspec

from qwallet_partner._exceptions import (
    ErrorCode,
    NotAllowedError,
    OutcomeUnknownError,
    RateLimitedError,
    UnexpectedResponseError,
    WalletAPIError,
    WalletConnectionError,
    WalletTimeoutError,
    error_for_code,
)
from qwallet_partner._models import (
    Money,
    Session,
    TransactionResult,
    check_amount,
    check_text,
    check_token,
    check_transaction_id,
)

__all__ = ["WalletClient"]

DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 1024 * 1024
"""An answer of the contract is a few hundred bytes; anything far bigger is not the platform."""

_T = TypeVar("_T")

# Money must reach the wire as the exact digits of the Decimal, never through float.
_ENCODER = msgspec.json.Encoder(decimal_format="number")
# Numbers in error bodies are kept exact too (``balance`` on 121).
_ANY_DECODER = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


class _TokenRequest(msgspec.Struct):
    token: str


class _MoneyRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    token: str
    mm_transaction_id: str
    amount: Money
    tx_description: str | None = None


class _ConfirmRequest(msgspec.Struct, rename="camel"):
    token: str
    mm_transaction_id: str
    amount: Money


class _RollbackRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    token: str
    mm_transaction_id: str
    rollback_reason: str | None = None


class _SessionWire(msgspec.Struct, rename="camel"):
    # The contract does not fix the JSON type of playerId; accept both and expose text.
    player_id: str | int
    nickname: str
    currency_code: str
    language: str
    balance: Money


class _BalanceWire(msgspec.Struct):
    balance: Money


class _ErrorEnvelope(msgspec.Struct, rename="camel"):
    error_code: int | None = None
    error_description: str = ""


def _new_request_id() -> str:
    return uuid.uuid4().hex


class WalletClient:
    """Calls the platform's Wallet API at ``base_url`` with HTTP Basic credentials.

    Every method raises a ``WalletAPIError`` subclass for an error answer and an
    ``OutcomeUnknownError`` when it cannot tell whether the call was applied (timeout,
    connection failure, HTTP 5xx, an answer outside the contract).
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        request_id_factory: Callable[[], str] = _new_request_id,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(username, password),
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            # A redirect on a POST would silently change the request; the contract has none.
            follow_redirects=False,
        )
        self._request_id_factory = request_id_factory

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- endpoints ---------------------------------------------------------------------------

    async def verify_session(self, token: str) -> Session:
        wire = await self._call("verifySession", _TokenRequest(check_token(token)), _SessionWire)
        return Session(
            player_id=str(wire.player_id),
            nickname=wire.nickname,
            currency_code=wire.currency_code,
            language=wire.language,
            balance=wire.balance,
        )

    async def get_balance(self, token: str) -> Money:
        wire = await self._call("getBalance", _TokenRequest(check_token(token)), _BalanceWire)
        return wire.balance

    async def withdraw(
        self,
        token: str,
        mm_transaction_id: str,
        amount: Money,
        description: str | None = None,
    ) -> TransactionResult:
        """Send ``withdraw`` once. On ANY exception the caller must roll back (spec §1.4)."""
        return await self._call(
            "withdraw",
            _money_request(token, mm_transaction_id, amount, description),
            TransactionResult,
        )

    async def confirm_withdrawal(
        self, token: str, mm_transaction_id: str, amount: Money
    ) -> TransactionResult:
        return await self._call(
            "confirmWithdrawal",
            _confirm_request(token, mm_transaction_id, amount),
            TransactionResult,
        )

    async def rollback_withdrawal(
        self, token: str, mm_transaction_id: str, reason: str | None = None
    ) -> TransactionResult:
        return await self._call(
            "rollbackWithdrawal",
            _rollback_request(token, mm_transaction_id, reason),
            TransactionResult,
        )

    async def deposit(
        self,
        token: str,
        mm_transaction_id: str,
        amount: Money,
        description: str | None = None,
    ) -> TransactionResult:
        """Send ``deposit`` once. On ANY exception the caller must roll back."""
        return await self._call(
            "deposit",
            _money_request(token, mm_transaction_id, amount, description),
            TransactionResult,
        )

    async def confirm_deposit(
        self, token: str, mm_transaction_id: str, amount: Money
    ) -> TransactionResult:
        return await self._call(
            "confirmDeposit",
            _confirm_request(token, mm_transaction_id, amount),
            TransactionResult,
        )

    async def rollback_deposit(
        self, token: str, mm_transaction_id: str, reason: str | None = None
    ) -> TransactionResult:
        return await self._call(
            "rollbackDeposit",
            _rollback_request(token, mm_transaction_id, reason),
            TransactionResult,
        )

    # -- one HTTP exchange -------------------------------------------------------------------

    async def _call(self, endpoint: str, body: msgspec.Struct, result_type: type[_T]) -> _T:
        request_id = self._request_id_factory()
        request = self._http.build_request(
            "POST",
            f"/wallet/{endpoint}",
            content=_ENCODER.encode(body),
            headers={"Content-Type": "application/json", "X-Request-Id": request_id},
        )
        try:
            response = await self._http.send(request, stream=True)
            try:
                content = await _read_limited(response, request_id)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise WalletTimeoutError(
                f"{endpoint}: no answer in time ({type(exc).__name__})", request_id=request_id
            ) from exc
        except httpx.TransportError as exc:
            raise WalletConnectionError(
                f"{endpoint}: {type(exc).__name__}: {exc}", request_id=request_id
            ) from exc
        retry_after_s = retry_after_seconds(response.headers.get("retry-after"), time.time())
        return _interpret(
            endpoint, response.status_code, content, result_type, request_id, retry_after_s
        )


def _money_request(
    token: str, mm_transaction_id: str, amount: Money, description: str | None
) -> _MoneyRequest:
    return _MoneyRequest(
        token=check_token(token),
        mm_transaction_id=check_transaction_id(mm_transaction_id),
        amount=check_amount(amount),
        tx_description=check_text(description, "description"),
    )


def _confirm_request(token: str, mm_transaction_id: str, amount: Money) -> _ConfirmRequest:
    return _ConfirmRequest(
        token=check_token(token),
        mm_transaction_id=check_transaction_id(mm_transaction_id),
        amount=check_amount(amount),
    )


def _rollback_request(token: str, mm_transaction_id: str, reason: str | None) -> _RollbackRequest:
    return _RollbackRequest(
        token=check_token(token),
        mm_transaction_id=check_transaction_id(mm_transaction_id),
        rollback_reason=check_text(reason, "reason"),
    )


async def _read_limited(response: httpx.Response, request_id: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise UnexpectedResponseError(
                f"answer larger than {MAX_RESPONSE_BYTES} bytes",
                http_status=response.status_code,
                request_id=request_id,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """The pause a ``Retry-After`` header asks for: delta-seconds or an HTTP date; None if the
    header is absent or unreadable (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value[:12])  # more digits than that is "very long" anyway
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # an HTTP date is always GMT
    return max(0.0, when.timestamp() - now)


def _interpret(
    endpoint: str,
    status: int,
    content: bytes,
    result_type: type[_T],
    request_id: str,
    retry_after_s: float | None = None,
) -> _T:
    """Turn one HTTP answer into a result or the exception the contract gives it."""
    if status in (401, 403):
        # The platform's 401 may have no error body at all; the status alone is the answer.
        envelope = _decode_envelope(content)
        description = envelope.error_description if envelope else ""
        raise NotAllowedError(
            description or f"HTTP {status}: credentials refused",
            http_status=status,
            request_id=request_id,
        )
    if status == 429:
        # Refused before anything was processed (code 104): not an unknown outcome. A proxy's
        # 429 may come without the contract's body; the status alone is the answer then.
        envelope = _decode_envelope(content)
        if envelope is not None and envelope.error_code is not None:
            raise _error_from_body(envelope, content, status, request_id, retry_after_s)
        raise RateLimitedError(
            "HTTP 429: rate limited",
            http_status=status,
            request_id=request_id,
            retry_after_s=retry_after_s,
        )
    if status not in (200, 400, 500):
        raise UnexpectedResponseError(
            f"{endpoint}: HTTP {status} is not an answer of the contract",
            http_status=status,
            request_id=request_id,
        )
    envelope = _decode_envelope(content)
    if envelope is not None and envelope.error_code is not None:
        raise _error_from_body(envelope, content, status, request_id, retry_after_s)
    if status != 200:
        raise UnexpectedResponseError(
            f"{endpoint}: HTTP {status} without the contract's error body",
            http_status=status,
            request_id=request_id,
        )
    try:
        return msgspec.json.decode(content, type=result_type)
    except msgspec.DecodeError as exc:
        # HTTP 200 with a body we cannot read: the call may well have been applied.
        raise UnexpectedResponseError(
            f"{endpoint}: unreadable success answer: {exc}",
            http_status=status,
            request_id=request_id,
        ) from exc


def _decode_envelope(content: bytes) -> _ErrorEnvelope | None:
    try:
        return msgspec.json.decode(content, type=_ErrorEnvelope)
    except msgspec.DecodeError:
        return None


def _error_from_body(
    envelope: _ErrorEnvelope,
    content: bytes,
    status: int,
    request_id: str,
    retry_after_s: float | None,
) -> WalletAPIError | OutcomeUnknownError:
    assert envelope.error_code is not None
    extra = _ANY_DECODER.decode(content)
    extra.pop("errorCode", None)
    extra.pop("errorDescription", None)
    if status == 429 or envelope.error_code == ErrorCode.RATE_LIMITED:
        return RateLimitedError(
            envelope.error_description or f"HTTP {status}: rate limited",
            http_status=status,
            extra=extra,
            request_id=request_id,
            retry_after_s=retry_after_s,
        )
    if status == 500 or envelope.error_code == 100:
        # Whatever the code says, HTTP 500 means the outcome is unknown (spec §1.2).
        return error_for_code(
            100,
            envelope.error_description,
            http_status=status,
            extra=extra,
            request_id=request_id,
        )
    return error_for_code(
        envelope.error_code,
        envelope.error_description,
        http_status=status,
        extra=extra,
        request_id=request_id,
    )
