"""``InMemoryWallet``: the platform's Wallet API emulated in memory, for the studio's own tests.

It follows the contract closely enough that a game backend tested against it behaves the same
against the real platform: Basic auth, the 400/401/500 answers, exact decimals with a configured
number of decimals per currency, held and pending-in funds, the two-phase state machine of
spec §1.4 (including the rollback that blocks a late original) and idempotent replays that
return the first answer. Like the platform it refuses, when configured: amounts above
``max_amount`` and deposits that would take a wallet above ``max_balance`` (102), withdrawals
beyond a player's ``daily_limit`` per UTC day (122), and calls beyond ``partner_rate_limit`` /
``player_rate_limit`` (requests per second, burst) with HTTP 429, code 104 and ``Retry-After``.
``fail_next`` injects the failures a network produces (timeouts before or after the platform
applied the call, 5xx, connection errors, any error code).

``tests/partner/test_platform_contract.py`` runs one suite against this class and against the
real platform on both of its databases, so the two cannot drift apart unnoticed.

Use ``wallet.transport`` as the ``transport=`` of a ``WalletClient``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import httpx
import msgspec

from qwallet_partner._throttle import FailureBudget

__all__ = ["Call", "Failure", "InMemoryWallet", "WalletTransaction"]

Failure = Literal["timeout", "connect", "http_500", "http_502", "error"]

_PLAIN_NUMBER = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,64}")
_ENCODER = msgspec.json.Encoder(decimal_format="number")
_SECONDS_PER_DAY = 86_400
RateLimit = tuple[float, int]
"""(requests per second, burst): the shape of the platform's ``QWALLET_RATE_LIMIT_*``."""


class _Amount(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    amount: msgspec.Raw
    currency_code: str


class _TokenBody(msgspec.Struct, forbid_unknown_fields=True):
    token: str


class _MoneyBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    token: str
    mm_transaction_id: str
    amount: _Amount
    tx_description: str | None = None


class _ConfirmBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    token: str
    mm_transaction_id: str
    amount: _Amount


class _RollbackBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    token: str
    mm_transaction_id: str
    rollback_reason: str | None = None


class _Refusal(Exception):
    """A contract error answer, raised inside the emulation and turned into a response."""

    def __init__(
        self, code: int, description: str, *, retry_after_s: int = 0, **extra: Any
    ) -> None:
        self.code = code
        self.description = description
        self.retry_after_s = retry_after_s
        self.extra = extra
        super().__init__(description)


@dataclass
class _Player:
    player_id: str
    nickname: str
    currency_code: str
    language: str
    available_minor: int
    held_minor: int = 0
    pending_in_minor: int = 0
    blocked: bool = False
    daily_limit_minor: int | None = None
    limit_day: int = 0
    day_withdrawn_minor: int = 0


@dataclass
class _Session:
    player_id: str
    expired: bool = False
    revoked: bool = False


@dataclass
class WalletTransaction:
    """One transaction as the emulated platform records it (``state``: pending, confirmed,
    rolled_back). ``amount_minor`` is None for a rollback that arrived before its original."""

    kind: Literal["withdrawal", "deposit"]
    mm_transaction_id: str
    qw_transaction_id: str
    player_id: str
    amount_minor: int | None
    currency_code: str | None
    state: str
    answers: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """One request the emulation received, for assertions in tests."""

    endpoint: str
    body: bytes
    request_id: str | None
    at: float


@dataclass
class _Fault:
    failure: Failure
    apply: bool
    error_code: int
    times: int
    retry_after_s: int = 1


class InMemoryWallet:
    """The platform's side of the Wallet API, in memory (one partner, many players)."""

    def __init__(
        self,
        *,
        username: str = "partner",
        password: str = "secret",  # noqa: S107 - a test double's default, not a credential
        currency_decimals: dict[str, int] | None = None,
        max_amount: Decimal | None = None,
        max_balance: Decimal | None = None,
        partner_rate_limit: RateLimit | None = None,
        player_rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._username = username
        self._password = password
        self._decimals = dict(currency_decimals or {"XAG": 2})
        self._max_amount = max_amount
        self._max_balance = max_balance
        self._clock = clock
        self._partner_limit = _buckets(partner_rate_limit, clock)
        self._player_limit = _buckets(player_rate_limit, clock)
        self._players: dict[str, _Player] = {}
        self._sessions: dict[str, _Session] = {}
        self._transactions: dict[tuple[str, str], WalletTransaction] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self.calls: list[Call] = []
        self.transport = httpx.MockTransport(self._handle)

    # -- setting up the world ----------------------------------------------------------------

    def add_player(
        self,
        balance: Decimal | str = "0",
        *,
        currency_code: str = "XAG",
        player_id: str | None = None,
        nickname: str = "Player",
        language: str = "en",
        token: str | None = None,
        daily_limit: Decimal | str | None = None,
    ) -> str:
        """Create a player with ``balance`` available and one live session; return its token.

        ``daily_limit`` caps what the player may withdraw per UTC day (122 beyond it); as on
        the platform, every withdrawal begun counts, even one later rolled back.
        """
        player_id = player_id or uuid.uuid4().hex[:12]
        self._players[player_id] = _Player(
            player_id,
            nickname,
            currency_code,
            language,
            self._to_minor(Decimal(balance), currency_code),
            daily_limit_minor=None
            if daily_limit is None
            else self._to_minor(Decimal(daily_limit), currency_code),
        )
        return self.add_session(player_id, token)

    def add_session(self, player_id: str, token: str | None = None) -> str:
        token = token or str(uuid.uuid4())
        self._sessions[token] = _Session(player_id)
        return token

    def expire_session(self, token: str) -> None:
        self._sessions[token].expired = True

    def revoke_session(self, token: str) -> None:
        self._sessions[token].revoked = True

    def block_player(self, player_id: str, blocked: bool = True) -> None:
        """Block (or unblock) a player. Blocking revokes the player's session tokens, as on the
        platform: they answer 110, except confirm and rollback of money already held; a session
        added while blocked answers 112."""
        self._players[player_id].blocked = blocked
        if blocked:
            for session in self._sessions.values():
                if session.player_id == player_id:
                    session.revoked = True

    def player_of(self, token: str) -> str:
        return self._sessions[token].player_id

    def available(self, player_id: str) -> Decimal:
        player = self._players[player_id]
        return self._from_minor(player.available_minor, player.currency_code)

    def held(self, player_id: str) -> Decimal:
        player = self._players[player_id]
        return self._from_minor(player.held_minor, player.currency_code)

    def pending_in(self, player_id: str) -> Decimal:
        player = self._players[player_id]
        return self._from_minor(player.pending_in_minor, player.currency_code)

    def transaction(
        self, kind: Literal["withdrawal", "deposit"], mm_transaction_id: str
    ) -> WalletTransaction | None:
        return self._transactions.get((kind, mm_transaction_id))

    def calls_to(self, endpoint: str) -> list[Call]:
        return [call for call in self.calls if call.endpoint == endpoint]

    def fail_next(
        self,
        endpoint: str,
        failure: Failure = "timeout",
        *,
        apply: bool = False,
        error_code: int = 100,
        times: int = 1,
        retry_after_s: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``endpoint`` fail.

        ``apply=True`` lets the platform apply the call before the failure, as when the answer
        is lost on the way back. ``failure="error"`` answers ``error_code`` with its contract
        status (400 for 101, 429 with ``Retry-After: retry_after_s`` for 104, 500 for 100, else
        200).
        """
        self._faults.setdefault(endpoint, []).append(
            _Fault(failure, apply, error_code, times, retry_after_s)
        )

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        body = await request.aread()
        endpoint = request.url.path.rsplit("/", 1)[-1]
        self.calls.append(Call(endpoint, body, request.headers.get("X-Request-Id"), self._clock()))
        headers = {"X-Request-Id": request_id}
        if not self._authorized(request.headers.get("Authorization")):
            return _error_response(401, 103, "Missing or invalid credentials.", headers)
        if request.method != "POST" or not request.url.path.startswith("/wallet/"):
            return httpx.Response(404, headers=headers)
        if wait_s := _take(self._partner_limit, "partner"):
            return _rate_limited(wait_s, "partner", headers)
        fault = self._take_fault(endpoint)
        if fault is not None and not fault.apply:
            return _fail(fault, request, headers)
        response = self._dispatch(endpoint, body, headers)
        if fault is not None:
            return _fail(fault, request, headers)
        return response

    def _authorized(self, header: str | None) -> bool:
        if header is None or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        # Both comparisons always run, so timing does not tell which one failed.
        user_ok = hmac.compare_digest(username.encode(), self._username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.encode())
        return user_ok and password_ok

    def _take_fault(self, endpoint: str) -> _Fault | None:
        queue = self._faults.get(endpoint)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    def _dispatch(self, endpoint: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        handlers: dict[str, Callable[[bytes], bytes]] = {
            "verifySession": self._verify_session,
            "getBalance": self._get_balance,
            "withdraw": lambda b: self._original("withdrawal", b),
            "deposit": lambda b: self._original("deposit", b),
            "confirmWithdrawal": lambda b: self._confirm("withdrawal", b),
            "confirmDeposit": lambda b: self._confirm("deposit", b),
            "rollbackWithdrawal": lambda b: self._rollback("withdrawal", b),
            "rollbackDeposit": lambda b: self._rollback("deposit", b),
        }
        handler = handlers.get(endpoint)
        if handler is None:
            return httpx.Response(404, headers=headers)
        try:
            answer = handler(body)
        except msgspec.DecodeError as exc:
            return _error_response(400, 101, f"Malformed request: {exc}", headers)
        except _Refusal as refusal:
            if refusal.code == 104:
                return _rate_limited(refusal.retry_after_s, "player", headers)
            status = 400 if refusal.code == 101 else 200
            return _error_response(
                status, refusal.code, refusal.description, headers, **refusal.extra
            )
        return httpx.Response(200, content=answer, headers=_json(headers))

    # -- the rules ---------------------------------------------------------------------------

    def _limit_player(self, token: str) -> None:
        # After the body is decoded, before any rule: the platform's order (qwallet.api.wallet).
        if wait_s := _take(self._player_limit, token):
            raise _Refusal(104, "Rate limited (player).", retry_after_s=wait_s)

    def _verify_session(self, body: bytes) -> bytes:
        request = msgspec.json.decode(body, type=_TokenBody)
        self._limit_player(request.token)
        player = self._live_player(request.token)
        return _ENCODER.encode(
            {
                "playerId": player.player_id,
                "nickname": player.nickname,
                "currencyCode": player.currency_code,
                "language": player.language,
                "balance": self._balance(player),
            }
        )

    def _get_balance(self, body: bytes) -> bytes:
        request = msgspec.json.decode(body, type=_TokenBody)
        self._limit_player(request.token)
        player = self._live_player(request.token)
        return _ENCODER.encode({"balance": self._balance(player)})

    def _original(self, kind: Literal["withdrawal", "deposit"], body: bytes) -> bytes:
        request = msgspec.json.decode(body, type=_MoneyBody)
        self._limit_player(request.token)
        mm_id = _check_id(request.mm_transaction_id)
        _check_text(request.tx_description)
        player = self._live_player(request.token)
        amount_minor = self._amount(request.amount, player)
        existing = self._transactions.get((kind, mm_id))
        operation = "original"
        if existing is not None:
            if existing.state == "rolled_back":
                raise _Refusal(132, "Transaction already rolled back.", mmTransactionId=mm_id)
            self._same_data(existing, player, amount_minor, request.amount.currency_code)
            return existing.answers[operation]
        if kind == "withdrawal":
            # Limits, then funds: the platform's order of checks.
            today = int(self._clock() // _SECONDS_PER_DAY)
            day_withdrawn = player.day_withdrawn_minor if player.limit_day == today else 0
            day_withdrawn += amount_minor
            limit = player.daily_limit_minor
            if limit is not None and day_withdrawn > limit:
                raise _Refusal(122, "Daily withdrawal limit exceeded.")
            if player.available_minor < amount_minor:
                raise _Refusal(121, "Insufficient funds.", balance=self._balance(player))
            player.available_minor -= amount_minor
            player.held_minor += amount_minor
            player.limit_day, player.day_withdrawn_minor = today, day_withdrawn
        else:
            maximum = self._max_balance
            total = player.available_minor + player.pending_in_minor + amount_minor
            if maximum is not None and total > self._to_minor(maximum, player.currency_code):
                raise _Refusal(102, "Deposit would take the wallet above its maximum balance.")
            player.pending_in_minor += amount_minor
        transaction = WalletTransaction(
            kind,
            mm_id,
            str(uuid.uuid4()),
            player.player_id,
            amount_minor,
            player.currency_code,
            "pending",
        )
        self._transactions[(kind, mm_id)] = transaction
        return self._answer(transaction, player, operation)

    def _confirm(self, kind: Literal["withdrawal", "deposit"], body: bytes) -> bytes:
        request = msgspec.json.decode(body, type=_ConfirmBody)
        self._limit_player(request.token)
        mm_id = _check_id(request.mm_transaction_id)
        player = self._known_player(request.token)
        transaction = self._transactions.get((kind, mm_id))
        if transaction is None or transaction.player_id != player.player_id:
            raise _Refusal(130, "Transaction not found.", mmTransactionId=mm_id)
        if transaction.state == "rolled_back":
            raise _Refusal(132, "Transaction already rolled back.", mmTransactionId=mm_id)
        amount_minor = self._amount(request.amount, player, of_wallet=False)
        self._same_data(transaction, player, amount_minor, request.amount.currency_code)
        if transaction.state == "confirmed":
            return transaction.answers["confirm"]
        assert transaction.amount_minor is not None
        if kind == "withdrawal":
            player.held_minor -= transaction.amount_minor
        else:
            player.pending_in_minor -= transaction.amount_minor
            player.available_minor += transaction.amount_minor
        transaction.state = "confirmed"
        return self._answer(transaction, player, "confirm")

    def _rollback(self, kind: Literal["withdrawal", "deposit"], body: bytes) -> bytes:
        request = msgspec.json.decode(body, type=_RollbackBody)
        self._limit_player(request.token)
        mm_id = _check_id(request.mm_transaction_id)
        _check_text(request.rollback_reason)
        player = self._known_player(request.token)
        transaction = self._transactions.get((kind, mm_id))
        if transaction is not None and transaction.player_id != player.player_id:
            raise _Refusal(130, "Transaction not found.", mmTransactionId=mm_id)
        if transaction is None:
            # The rollback overtook its original: record it so the late original gets 132.
            transaction = WalletTransaction(
                kind, mm_id, str(uuid.uuid4()), player.player_id, None, None, "rolled_back"
            )
            self._transactions[(kind, mm_id)] = transaction
            return self._answer(transaction, player, "rollback")
        if transaction.state == "confirmed":
            raise _Refusal(133, "Transaction already confirmed.", mmTransactionId=mm_id)
        if transaction.state == "rolled_back":
            return transaction.answers["rollback"]
        assert transaction.amount_minor is not None
        if kind == "withdrawal":
            player.held_minor -= transaction.amount_minor
            player.available_minor += transaction.amount_minor
        else:
            player.pending_in_minor -= transaction.amount_minor
        transaction.state = "rolled_back"
        return self._answer(transaction, player, "rollback")

    # -- helpers -----------------------------------------------------------------------------

    def _answer(self, transaction: WalletTransaction, player: _Player, operation: str) -> bytes:
        # Replays answer these exact bytes, including the balance of the first answer.
        raw = _ENCODER.encode(
            {
                "mmTransactionId": transaction.mm_transaction_id,
                "qwTransactionId": transaction.qw_transaction_id,
                "balance": self._balance(player),
            }
        )
        transaction.answers[operation] = raw
        return raw

    def _session(self, token: str) -> _Session:
        if len(token) > 64:
            raise _Refusal(101, "token longer than 64 characters.")
        session = self._sessions.get(token)
        if session is None:
            raise _Refusal(110, "Unknown or revoked session token.")
        return session

    def _live_player(self, token: str) -> _Player:
        session = self._session(token)
        if session.revoked:
            raise _Refusal(110, "Unknown or revoked session token.")
        if session.expired:
            raise _Refusal(111, "Session expired.")
        player = self._players[session.player_id]
        if player.blocked:
            raise _Refusal(112, "Player is blocked.")
        return player

    def _known_player(self, token: str) -> _Player:
        # Confirm and rollback are retried for 48 h, so an expired session still counts, and so
        # does a revoked one (the player signed out or was blocked): the money already held must
        # still reach a final state, as on the platform.
        return self._players[self._session(token).player_id]

    def _amount(self, amount: _Amount, player: _Player, *, of_wallet: bool = True) -> int:
        """The amount in minor units. ``of_wallet=False`` (confirm) accepts any configured
        currency: a confirm in another one than its original's is 131, as on the platform."""
        raw = bytes(amount.amount)
        if not _PLAIN_NUMBER.fullmatch(raw):
            if raw[:1] in b'"[{tfn':
                raise _Refusal(101, "amount.amount must be a JSON number.")
            raise _Refusal(102, "amount must be a plain decimal number.")
        if amount.currency_code not in self._decimals:
            raise _Refusal(120, f"Currency {amount.currency_code!r} is not supported.")
        if of_wallet and amount.currency_code != player.currency_code:
            raise _Refusal(120, "Currency does not match the player's wallet.")
        value = Decimal(raw.decode())
        decimals = self._decimals.get(amount.currency_code, 2)
        # Trailing zeros carry no value: 230.000 is 230.00 for a two-decimal currency.
        exponent = value.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        if value <= 0 or -exponent > decimals:
            raise _Refusal(102, "Invalid amount.")
        if self._max_amount is not None and value > self._max_amount:
            raise _Refusal(102, "Amount above the maximum.")
        return self._to_minor(value, amount.currency_code)

    def _same_data(
        self, transaction: WalletTransaction, player: _Player, amount_minor: int, currency: str
    ) -> None:
        if (
            transaction.player_id != player.player_id
            or transaction.amount_minor != amount_minor
            or transaction.currency_code != currency
        ):
            raise _Refusal(
                131,
                "Transaction id already used with different data.",
                mmTransactionId=transaction.mm_transaction_id,
            )

    def _balance(self, player: _Player) -> dict[str, Any]:
        return {
            "amount": self._from_minor(player.available_minor, player.currency_code),
            "currencyCode": player.currency_code,
        }

    def _to_minor(self, value: Decimal, currency_code: str) -> int:
        scaled = value.scaleb(self._decimals.get(currency_code, 2))
        assert scaled == scaled.to_integral_value(), value
        return int(scaled)

    def _from_minor(self, minor: int, currency_code: str) -> Decimal:
        return Decimal(minor).scaleb(-self._decimals.get(currency_code, 2))


def _check_id(mm_transaction_id: str) -> str:
    if not _PRINTABLE_ASCII.fullmatch(mm_transaction_id):
        raise _Refusal(101, "mmTransactionId must be 1-64 printable ASCII characters.")
    return mm_transaction_id


def _check_text(text: str | None) -> None:
    if text is not None and len(text) > 255:
        raise _Refusal(101, "Descriptions and reasons are at most 255 characters.")


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


def _error_response(
    status: int, code: int, description: str, headers: dict[str, str], **extra: Any
) -> httpx.Response:
    body = {"errorCode": code, "errorDescription": description, **extra}
    return httpx.Response(status, content=_ENCODER.encode(body), headers=_json(headers))


def _buckets(limit: RateLimit | None, clock: Callable[[], float]) -> FailureBudget | None:
    if limit is None:
        return None
    rate_per_s, burst = limit
    if rate_per_s <= 0:
        raise ValueError("a rate limit needs a positive rate")
    return FailureBudget(burst, 1.0 / rate_per_s, clock=clock)


def _take(buckets: FailureBudget | None, key: str) -> int:
    """0 when the call may proceed, else the platform's ``Retry-After``: whole seconds, >= 1."""
    if buckets is None:
        return 0
    wait_s = buckets.take(key)
    return FailureBudget.retry_after_s(wait_s) if wait_s > 0 else 0


def _rate_limited(retry_after_s: int, what: str, headers: dict[str, str]) -> httpx.Response:
    description = f"Rate limited ({what}); retry the same call after {retry_after_s} s."
    return _error_response(429, 104, description, {**headers, "Retry-After": str(retry_after_s)})


def _fail(fault: _Fault, request: httpx.Request, headers: dict[str, str]) -> httpx.Response:
    if fault.failure == "timeout":
        raise httpx.ReadTimeout("injected timeout", request=request)
    if fault.failure == "connect":
        raise httpx.ConnectError("injected connection failure", request=request)
    if fault.failure == "http_502":
        return httpx.Response(502, text="<html>Bad Gateway</html>", headers=headers)
    if fault.failure == "http_500":
        return _error_response(500, 100, "Injected failure.", headers)
    if fault.error_code == 104:
        return _rate_limited(fault.retry_after_s, "injected", headers)
    status = {100: 500, 101: 400}.get(fault.error_code, 200)
    return _error_response(status, fault.error_code, "Injected error.", headers)
