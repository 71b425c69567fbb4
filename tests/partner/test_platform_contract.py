"""One contract suite, two implementations: the kit's ``InMemoryWallet`` and the real platform.

Every test here runs three times — against ``InMemoryWallet`` (through its httpx transport) and
against a real server on loopback on SQLite and on PostgreSQL — with the same requests and the
same expected answers. Together they cover both sides of every row of the contract's error table
(spec §1.2: the call that is refused, and the nearest call that is not) and every cell of the
state-machine table (§1.4), for withdrawals and deposits. A rule the emulation gets wrong, or
the platform changes alone, fails here.

Requests are raw JSON (not ``WalletClient``, which refuses malformed input before sending). Each
implementation is driven through a small ``Side``: how to create a player, expire a session,
block a player, or make the next call fail inside the platform.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from qwallet.clock import ManualClock
from qwallet.domain.errors import ErrorCode
from qwallet.domain.money import format_amount
from qwallet.partner import FakeClock, InMemoryWallet
from qwallet.settings import Settings

from ..conftest import UNLIMITED_RPS, LiveServer, Platform, fresh_database_url

XAG = Settings().currency_registry["XAG"]
MAX_AMOUNT = format_amount(XAG.max_amount_minor, XAG)
MAX_BALANCE = format_amount(XAG.max_balance_minor, XAG)
IDLE_TIMEOUT_S = Settings().session_idle_timeout_s
LIMITED = (1.0, 2)
"""The player rate limit of the rate-limited twin: 1 request per second, burst of 2."""

KINDS = {
    "withdrawal": ("withdraw", "confirmWithdrawal", "rollbackWithdrawal"),
    "deposit": ("deposit", "confirmDeposit", "rollbackDeposit"),
}

Answer = tuple[int, dict[str, Any], httpx.Headers]


@dataclass
class Player:
    token: str
    player_id: str


class Side:
    """One implementation of the Wallet API and the operator actions the suite needs."""

    name: str

    def url(self, *, limited: bool = False) -> str:
        raise NotImplementedError

    def transport(self, *, limited: bool = False) -> httpx.AsyncBaseTransport | None:
        raise NotImplementedError

    def credentials(self, *, limited: bool = False) -> tuple[str, str]:
        raise NotImplementedError

    def player(self, balance: str = "100.00", daily_limit: str | None = None) -> Player:
        raise NotImplementedError

    def limited_player(self) -> Player:
        """A player at the twin whose player rate limit is ``LIMITED``."""
        raise NotImplementedError

    def session(self, player_id: str) -> str:
        raise NotImplementedError

    def expire_all(self) -> None:
        """Every session so far is past its idle timeout."""
        raise NotImplementedError

    def next_day(self) -> None:
        raise NotImplementedError

    def wait_s(self, seconds: float) -> None:
        """Let ``seconds`` pass for the rate limiter."""
        raise NotImplementedError

    def block(self, player_id: str, blocked: bool = True) -> None:
        raise NotImplementedError

    def fail_next_inside(self, endpoint: str) -> None:
        """The next call to ``endpoint`` fails unexpectedly inside the platform (100 / 500)."""
        raise NotImplementedError

    def wallet(self, player_id: str) -> tuple[Decimal, Decimal, Decimal]:
        """(available, held, pending in)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemorySide(Side):
    name = "memory"

    def __init__(self) -> None:
        self.clock = FakeClock(time.time())
        limits: dict[str, Any] = {
            "currency_decimals": {c.code: c.decimals for c in Settings().currencies},
            "max_amount": Decimal(MAX_AMOUNT),
            "max_balance": Decimal(MAX_BALANCE),
            "clock": self.clock.now,
        }
        self.memory = InMemoryWallet(**limits)
        self.limited = InMemoryWallet(**limits, player_rate_limit=LIMITED)
        self.tokens: list[str] = []

    def url(self, *, limited: bool = False) -> str:
        return "http://platform.test"

    def transport(self, *, limited: bool = False) -> httpx.AsyncBaseTransport | None:
        return (self.limited if limited else self.memory).transport

    def credentials(self, *, limited: bool = False) -> tuple[str, str]:
        return "partner", "secret"

    def player(self, balance: str = "100.00", daily_limit: str | None = None) -> Player:
        token = self.memory.add_player(balance, daily_limit=daily_limit)
        self.tokens.append(token)
        return Player(token, self.memory.player_of(token))

    def limited_player(self) -> Player:
        token = self.limited.add_player("100.00")
        return Player(token, self.limited.player_of(token))

    def session(self, player_id: str) -> str:
        token = self.memory.add_session(player_id)
        self.tokens.append(token)
        return token

    def expire_all(self) -> None:
        for token in self.tokens:
            self.memory.expire_session(token)

    def next_day(self) -> None:
        self.clock.advance(86_400)

    def wait_s(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def block(self, player_id: str, blocked: bool = True) -> None:
        self.memory.block_player(player_id, blocked)

    def fail_next_inside(self, endpoint: str) -> None:
        self.memory.fail_next(endpoint, "http_500")

    def wallet(self, player_id: str) -> tuple[Decimal, Decimal, Decimal]:
        memory = self.memory
        return memory.available(player_id), memory.held(player_id), memory.pending_in(player_id)


class _FailOnce:
    """Wraps the server's store: the next call of one use case raises, as a bug or a lost
    database connection would, before anything is applied."""

    def __init__(self, store: Any, method: str) -> None:
        self._store, self._method, self._armed = store, method, True

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name != self._method or not self._armed:
            return target

        async def fail(*args: Any, **kwargs: Any) -> Any:
            self._armed = False
            raise RuntimeError("injected failure inside the platform")

        return fail


_STORE_METHOD = {
    "verifySession": "verify_session",
    "getBalance": "get_balance",
    "withdraw": "begin",
    "deposit": "begin",
    "confirmWithdrawal": "confirm",
    "confirmDeposit": "confirm",
    "rollbackWithdrawal": "rollback",
    "rollbackDeposit": "rollback",
}


class PlatformSide(Side):
    def __init__(self, backend: str, database_url: str) -> None:
        self.name = backend
        self.clock = ManualClock(start_ms=time.time_ns() // 1_000_000)
        settings = Settings(
            database_url=database_url,
            rate_limit_player_rps=UNLIMITED_RPS,
            rate_limit_player_burst=int(UNLIMITED_RPS),
            rate_limit_partner_rps=UNLIMITED_RPS,
            rate_limit_partner_burst=int(UNLIMITED_RPS),
        )
        limited = replace(
            settings, rate_limit_player_rps=LIMITED[0], rate_limit_player_burst=LIMITED[1]
        )
        self.platform = Platform(settings, self.clock)
        self.server = LiveServer(settings, self.clock)
        self.limited_server = LiveServer(limited, self.clock)
        self.server.start()
        self.limited_server.start()
        self.partner = self.platform.create_partner()

    def url(self, *, limited: bool = False) -> str:
        return (self.limited_server if limited else self.server).url

    def transport(self, *, limited: bool = False) -> httpx.AsyncBaseTransport | None:
        return None

    def credentials(self, *, limited: bool = False) -> tuple[str, str]:
        return self.partner

    def player(self, balance: str = "100.00", daily_limit: str | None = None) -> Player:
        player_id = self.platform.create_player(balance, "XAG", daily_limit)
        return Player(self.session(player_id), player_id)

    def limited_player(self) -> Player:
        return self.player()

    def session(self, player_id: str) -> str:
        return self.platform.create_session(player_id, self.partner[0])

    def expire_all(self) -> None:
        self.clock.advance((IDLE_TIMEOUT_S + 60) * 1000)

    def next_day(self) -> None:
        self.clock.advance(86_400_000)

    def wait_s(self, seconds: float) -> None:
        time.sleep(seconds)  # the server's limiter runs on the monotonic clock

    def block(self, player_id: str, blocked: bool = True) -> None:
        self.platform.block(player_id, blocked)

    def fail_next_inside(self, endpoint: str) -> None:
        app = self.server._server.config.app
        app.wallet._store = _FailOnce(app.wallet._store, _STORE_METHOD[endpoint])

    def wallet(self, player_id: str) -> tuple[Decimal, Decimal, Decimal]:
        row = self.platform.player(player_id)
        return Decimal(row["available"]), Decimal(row["held"]), Decimal(row["pendingIn"])

    def other_partner_token(self, player_id: str) -> tuple[tuple[str, str], str]:
        other = self.platform.create_partner()
        return other, self.platform.create_session(player_id, other[0])

    def close(self) -> None:
        assert self.platform.reconcile().ok, "every balance matches the ledger"
        self.server.stop()
        self.limited_server.stop()
        self.platform.close()


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def side(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Side]:
    if request.param == "memory":
        yield MemorySide()
        return
    databases = fresh_database_url(request.param, tmp_path_factory.mktemp(request.param))
    implementation = PlatformSide(request.param, next(databases))
    try:
        yield implementation
    finally:
        implementation.close()
        next(databases, None)  # drops the database


# -- calling ------------------------------------------------------------------------------------


def amount(value: str, currency: str = "XAG") -> str:
    """An amount object as JSON text, the number written exactly as given."""
    return f'{{"amount": {value}, "currencyCode": {json.dumps(currency)}}}'


def body_text(token: str, mm_id: str | None = None, value: str | None = None, **extra: Any) -> str:
    fields = [f'"token": {json.dumps(token)}']
    if mm_id is not None:
        fields.append(f'"mmTransactionId": {json.dumps(mm_id)}')
    if value is not None:
        fields.append(f'"amount": {amount(value, extra.pop("currency", "XAG"))}')
    fields.extend(f"{json.dumps(key)}: {json.dumps(item)}" for key, item in extra.items())
    return "{" + ", ".join(fields) + "}"


async def _send(
    side: Side, requests: list[tuple[str, str]], limited: bool, auth: tuple[str, str] | None
) -> list[Answer]:
    async with httpx.AsyncClient(
        base_url=side.url(limited=limited),
        auth=auth or side.credentials(limited=limited),
        transport=side.transport(limited=limited),
        timeout=30,
    ) as client:

        async def one(endpoint: str, text: str) -> Answer:
            response = await client.post(
                f"/wallet/{endpoint}",
                content=text.encode(),
                headers={"Content-Type": "application/json"},
            )
            decoded = json.loads(response.content, parse_float=Decimal) if response.content else {}
            return response.status_code, decoded, response.headers

        return list(await asyncio.gather(*(one(e, t) for e, t in requests)))


def call(
    side: Side,
    endpoint: str,
    text: str,
    *,
    limited: bool = False,
    auth: tuple[str, str] | None = None,
) -> Answer:
    return asyncio.run(_send(side, [(endpoint, text)], limited, auth))[0]


def ok(answer: Answer) -> dict[str, Any]:
    status, body, _ = answer
    assert status == 200 and "errorCode" not in body, answer
    return body


def refused(answer: Answer, code: ErrorCode) -> dict[str, Any]:
    """The answer is the contract's error body for ``code``, with the code's HTTP status."""
    status, body, _ = answer
    assert body.get("errorCode") == code, answer
    assert isinstance(body.get("errorDescription"), str), answer
    assert status == code.http_status, answer
    return body


def balance_of(body: dict[str, Any]) -> Decimal:
    assert body["balance"]["currencyCode"] == "XAG"
    return Decimal(body["balance"]["amount"])


_ids = iter(range(1, 10**9))


def new_id(prefix: str = "tx") -> str:
    return f"{prefix}-{next(_ids)}-{time.time_ns() % 10**9}"


# -- the error table: both sides of every row ---------------------------------------------------


def test_100_unexpected_failure_is_500_and_the_retry_is_safe(side: Side) -> None:
    player = side.player("10.00")
    mm_id = new_id()
    side.fail_next_inside("withdraw")
    refused(call(side, "withdraw", body_text(player.token, mm_id, "1.00")), ErrorCode.OTHER)
    assert side.wallet(player.player_id) == (Decimal("10.00"), 0, 0)
    held = ok(call(side, "withdraw", body_text(player.token, mm_id, "1.00")))
    assert balance_of(held) == Decimal("9.00")
    ok(call(side, "rollbackWithdrawal", body_text(player.token, mm_id)))


def test_101_malformed_request_is_400(side: Side) -> None:
    player = side.player("10.00")
    mm_id = new_id()
    for text in (
        b"not json".decode(),
        "[1, 2]",
        body_text(player.token, mm_id),  # amount missing
        body_text(player.token, mm_id, '"1.00"'),  # amount as a string
        body_text(player.token, mm_id, "1.00", unexpected="field"),
        body_text(player.token, "x" * 65, "1.00"),  # mmTransactionId too long
        body_text(player.token, mm_id, "1.00", txDescription="d" * 256),
    ):
        refused(call(side, "withdraw", text), ErrorCode.MALFORMED_REQUEST)
    assert side.wallet(player.player_id) == (Decimal("10.00"), 0, 0)
    # The nearest well-formed request is processed.
    text = body_text(player.token, "x" * 64, "1.00", txDescription="d" * 255)
    ok(call(side, "withdraw", text))
    ok(call(side, "confirmWithdrawal", body_text(player.token, "x" * 64, "1.00")))


def test_102_invalid_amount_and_the_maxima(side: Side) -> None:
    rich = side.player(MAX_AMOUNT)
    for value in ("0", "0.00", "-1.00", "1.001", "1e2"):
        refused(call(side, "withdraw", body_text(rich.token, new_id(), value)), ErrorCode(102))
    above = format_amount(XAG.max_amount_minor + 1, XAG)
    refused(call(side, "withdraw", body_text(rich.token, new_id(), above)), ErrorCode(102))
    assert side.wallet(rich.player_id) == (Decimal(MAX_AMOUNT), 0, 0)
    # Exactly the maximum single amount, and trailing zeros within the decimals, are accepted.
    ok(call(side, "withdraw", body_text(rich.token, new_id(), MAX_AMOUNT)))
    top = side.player(format_amount(XAG.max_balance_minor - 100, XAG))
    refused(call(side, "deposit", body_text(top.token, new_id(), "1.01")), ErrorCode(102))
    ok(call(side, "deposit", body_text(top.token, new_id(), "1.000")))  # exactly the maximum
    # A pending deposit counts towards the maximum balance.
    refused(call(side, "deposit", body_text(top.token, new_id(), "0.01")), ErrorCode(102))


def test_103_credentials(side: Side) -> None:
    player = side.player("10.00")
    username, _ = side.credentials()
    text = body_text(player.token)
    refused(call(side, "getBalance", text, auth=(username, "wrong")), ErrorCode.NOT_AUTHORIZED)
    assert balance_of(ok(call(side, "getBalance", text))) == Decimal("10.00")


def test_104_rate_limited_is_429_with_retry_after_and_changes_nothing(side: Side) -> None:
    player = side.limited_player()
    text = body_text(player.token)
    ok(call(side, "getBalance", text, limited=True))
    ok(call(side, "getBalance", text, limited=True))
    mm_id = new_id()
    status, body, headers = call(
        side, "withdraw", body_text(player.token, mm_id, "1.00"), limited=True
    )
    refused((status, body, headers), ErrorCode.RATE_LIMITED)
    retry_after = headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, headers
    # Retrying the same call after Retry-After is processed (the first time: nothing was held).
    side.wait_s(int(retry_after))
    held = ok(call(side, "withdraw", body_text(player.token, mm_id, "1.00"), limited=True))
    assert balance_of(held) == Decimal("99.00")
    side.wait_s(1)
    ok(call(side, "rollbackWithdrawal", body_text(player.token, mm_id), limited=True))


def test_110_unknown_token(side: Side) -> None:
    player = side.player("10.00")
    refused(call(side, "getBalance", body_text("no-such-token")), ErrorCode.UNKNOWN_SESSION)
    refused(
        call(side, "withdraw", body_text("no-such-token", new_id(), "1.00")),
        ErrorCode.UNKNOWN_SESSION,
    )
    ok(call(side, "getBalance", body_text(player.token)))
    if isinstance(side, PlatformSide):
        # A token of another partner is as unknown as a made-up one.
        other, other_token = side.other_partner_token(player.player_id)
        refused(call(side, "getBalance", body_text(other_token)), ErrorCode.UNKNOWN_SESSION)
        ok(call(side, "getBalance", body_text(other_token), auth=other))


def test_111_expired_session_refuses_new_calls_but_not_confirm_or_rollback(side: Side) -> None:
    player = side.player("10.00")
    ok(call(side, "withdraw", body_text(player.token, "e-1", "1.00")))
    ok(call(side, "withdraw", body_text(player.token, "e-2", "1.00")))
    ok(call(side, "deposit", body_text(player.token, "e-3", "1.00")))
    side.expire_all()
    for endpoint in ("verifySession", "getBalance"):
        refused(call(side, endpoint, body_text(player.token)), ErrorCode.SESSION_EXPIRED)
    for endpoint in ("withdraw", "deposit"):
        text = body_text(player.token, new_id(), "1.00")
        refused(call(side, endpoint, text), ErrorCode.SESSION_EXPIRED)
    ok(call(side, "confirmWithdrawal", body_text(player.token, "e-1", "1.00")))
    ok(call(side, "rollbackWithdrawal", body_text(player.token, "e-2")))
    ok(call(side, "confirmDeposit", body_text(player.token, "e-3", "1.00")))
    assert side.wallet(player.player_id) == (Decimal("10.00"), 0, 0)
    # A fresh session of the same player is live.
    ok(call(side, "getBalance", body_text(side.session(player.player_id))))


def test_112_blocked_player(side: Side) -> None:
    player = side.player("10.00")
    ok(call(side, "withdraw", body_text(player.token, "b-1", "1.00")))
    side.block(player.player_id)
    # Blocking revokes the player's tokens; a session issued while blocked answers 112.
    refused(call(side, "verifySession", body_text(player.token)), ErrorCode.UNKNOWN_SESSION)
    blocked = side.session(player.player_id)
    for endpoint in ("verifySession", "getBalance"):
        refused(call(side, endpoint, body_text(blocked)), ErrorCode.PLAYER_BLOCKED)
    for endpoint in ("withdraw", "deposit"):
        refused(call(side, endpoint, body_text(blocked, new_id(), "1.00")), ErrorCode(112))
    # Money already held still reaches a final state, with the old token too.
    ok(call(side, "confirmWithdrawal", body_text(player.token, "b-1", "1.00")))
    side.block(player.player_id, False)
    assert balance_of(ok(call(side, "getBalance", body_text(blocked)))) == Decimal("9.00")


def test_120_currency_mismatch(side: Side) -> None:
    player = side.player("10.00")
    for currency in ("EUR", "ZZZ"):
        text = body_text(player.token, new_id(), "1.00", currency=currency)
        refused(call(side, "withdraw", text), ErrorCode.CURRENCY_MISMATCH)
    mm_id = new_id()
    ok(call(side, "withdraw", body_text(player.token, mm_id, "1.00")))
    # A currency the platform does not hold at all is 120 on confirm too (another configured
    # currency on confirm is 131: the original's data changed).
    text = body_text(player.token, mm_id, "1.00", currency="ZZZ")
    refused(call(side, "confirmWithdrawal", text), ErrorCode.CURRENCY_MISMATCH)
    ok(call(side, "confirmWithdrawal", body_text(player.token, mm_id, "1.00")))


def test_121_insufficient_funds_carries_the_balance(side: Side) -> None:
    player = side.player("10.00")
    body = refused(
        call(side, "withdraw", body_text(player.token, new_id(), "10.01")),
        ErrorCode.INSUFFICIENT_FUNDS,
    )
    assert balance_of(body) == Decimal("10.00")
    assert balance_of(ok(call(side, "withdraw", body_text(player.token, new_id(), "10.00")))) == 0
    body = refused(
        call(side, "withdraw", body_text(player.token, new_id(), "0.01")),
        ErrorCode.INSUFFICIENT_FUNDS,
    )
    assert balance_of(body) == 0


def test_122_daily_withdrawal_limit(side: Side) -> None:
    player = side.player("100.00", daily_limit="15.00")
    rolled = new_id()
    ok(call(side, "withdraw", body_text(player.token, rolled, "10.00")))
    ok(call(side, "rollbackWithdrawal", body_text(player.token, rolled)))
    # Every withdrawal begun today counts, also one rolled back: 10 + 6 > 15.
    text = body_text(player.token, new_id(), "6.00")
    refused(call(side, "withdraw", text), ErrorCode.LIMIT_EXCEEDED)
    # The limit is checked before the funds: 122 even when the funds would not suffice either.
    refused(call(side, "withdraw", body_text(player.token, new_id(), "100.01")), ErrorCode(122))
    ok(call(side, "withdraw", body_text(player.token, new_id(), "5.00")))  # exactly 15
    # Deposits are not limited; the next UTC day starts a new allowance.
    ok(call(side, "deposit", body_text(player.token, new_id(), "50.00")))
    side.next_day()
    fresh = side.session(player.player_id)
    ok(call(side, "withdraw", body_text(fresh, new_id(), "15.00")))
    refused(call(side, "withdraw", body_text(fresh, new_id(), "0.01")), ErrorCode(122))


def test_130_not_found_and_another_players_transaction(side: Side) -> None:
    owner = side.player("10.00")
    other = side.player("10.00")
    mm_id = new_id()
    for confirm in ("confirmWithdrawal", "confirmDeposit"):
        text = body_text(owner.token, new_id(), "1.00")
        refused(call(side, confirm, text), ErrorCode.TRANSACTION_NOT_FOUND)
    ok(call(side, "withdraw", body_text(owner.token, mm_id, "1.00")))
    # The id exists but belongs to another player: never revealed.
    text = body_text(other.token, mm_id, "1.00")
    refused(call(side, "confirmWithdrawal", text), ErrorCode.TRANSACTION_NOT_FOUND)
    refused(call(side, "rollbackWithdrawal", body_text(other.token, mm_id)), ErrorCode(130))
    ok(call(side, "confirmWithdrawal", body_text(owner.token, mm_id, "1.00")))
    assert side.wallet(other.player_id) == (Decimal("10.00"), 0, 0)


def test_131_same_id_with_different_data(side: Side) -> None:
    player = side.player("100.00")
    other = side.player("100.00")
    for begin, confirm, _ in KINDS.values():
        mm_id = new_id()
        first = ok(call(side, begin, body_text(player.token, mm_id, "10.00")))
        for changed in (
            body_text(player.token, mm_id, "11.00"),
            body_text(other.token, mm_id, "10.00"),
        ):
            body = refused(call(side, begin, changed), ErrorCode.TRANSACTION_DATA_MISMATCH)
            assert body["mmTransactionId"] == mm_id
        for text in (
            body_text(player.token, mm_id, "10.01"),
            body_text(player.token, mm_id, "10.00", currency="EUR"),
        ):
            refused(call(side, confirm, text), ErrorCode.TRANSACTION_DATA_MISMATCH)
        assert ok(call(side, begin, body_text(player.token, mm_id, "10.00"))) == first
        ok(call(side, confirm, body_text(player.token, mm_id, "10.00")))
    assert side.wallet(player.player_id) == (Decimal("100.00"), 0, 0)
    assert side.wallet(other.player_id) == (Decimal("100.00"), 0, 0)


def test_134_concurrent_duplicates_execute_once(side: Side) -> None:
    player = side.player("100.00")
    mm_id = new_id()
    text = body_text(player.token, mm_id, "7.00")
    answers = asyncio.run(_send(side, [("withdraw", text)] * 12, False, None))
    successes = [body for status, body, _ in answers if status == 200 and "errorCode" not in body]
    assert successes, answers
    for status, body, _ in answers:
        if "errorCode" in body:
            refused((status, body, httpx.Headers()), ErrorCode.TRANSACTION_IN_PROGRESS)
    assert all(body == successes[0] for body in successes)
    assert side.wallet(player.player_id) == (Decimal("93.00"), Decimal("7.00"), 0)
    ok(call(side, "confirmWithdrawal", text))


# -- the state-machine table, for both kinds ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_state_machine_table(side: Side, kind: str) -> None:
    begin, confirm, rollback = KINDS[kind]
    player = side.player("100.00")
    token = player.token

    # none: confirm → 130; rollback → rolled back (a record that blocks a late original)
    refused(call(side, confirm, body_text(token, new_id(), "1.00")), ErrorCode(130))
    blocked = new_id()
    blocker = ok(call(side, rollback, body_text(token, blocked)))
    assert set(blocker) == {"mmTransactionId", "qwTransactionId", "balance"}
    # rolled back: begin → 132; confirm → 132; rollback → replay
    refused(call(side, begin, body_text(token, blocked, "1.00")), ErrorCode(132))
    refused(call(side, confirm, body_text(token, blocked, "1.00")), ErrorCode(132))
    assert ok(call(side, rollback, body_text(token, blocked))) == blocker

    # none: begin → pending; pending: begin → replay (the first answer, balance included)
    pending = new_id()
    first = ok(call(side, begin, body_text(token, pending, "2.00")))
    assert set(first) == {"mmTransactionId", "qwTransactionId", "balance"}
    ok(call(side, begin, body_text(token, new_id(), "3.00")))  # the balance moves on
    assert ok(call(side, begin, body_text(token, pending, "2.00"))) == first
    # pending: confirm → confirmed; confirmed: begin → replay, confirm → replay, rollback → 133
    done = ok(call(side, confirm, body_text(token, pending, "2.00")))
    assert done["qwTransactionId"] == first["qwTransactionId"]
    assert ok(call(side, confirm, body_text(token, pending, "2.00"))) == done
    assert ok(call(side, begin, body_text(token, pending, "2.00"))) == first
    refused(call(side, rollback, body_text(token, pending)), ErrorCode(133))

    # pending: rollback → rolled back; then rollback replays, confirm → 132, begin → 132
    cancelled = new_id()
    ok(call(side, begin, body_text(token, cancelled, "4.00")))
    rolled = ok(call(side, rollback, body_text(token, cancelled, rollbackReason="no item")))
    assert ok(call(side, rollback, body_text(token, cancelled))) == rolled
    refused(call(side, confirm, body_text(token, cancelled, "4.00")), ErrorCode(132))
    refused(call(side, begin, body_text(token, cancelled, "4.00")), ErrorCode(132))


def test_balances_through_the_two_phases(side: Side) -> None:
    """Withdraw holds at once, confirm moves the held funds, rollback returns them; a deposit is
    not available until confirmed, and its rollback cancels it (spec §1.4)."""
    player = side.player("100.00")
    token = player.token
    assert balance_of(ok(call(side, "withdraw", body_text(token, "w-1", "30.00")))) == 70
    assert side.wallet(player.player_id) == (70, 30, 0)
    assert balance_of(ok(call(side, "confirmWithdrawal", body_text(token, "w-1", "30.00")))) == 70
    ok(call(side, "withdraw", body_text(token, "w-2", "20.00")))
    assert balance_of(ok(call(side, "rollbackWithdrawal", body_text(token, "w-2")))) == 70
    assert balance_of(ok(call(side, "deposit", body_text(token, "d-1", "5.00")))) == 70
    assert side.wallet(player.player_id) == (70, 0, 5)
    assert balance_of(ok(call(side, "confirmDeposit", body_text(token, "d-1", "5.00")))) == 75
    ok(call(side, "deposit", body_text(token, "d-2", "7.00")))
    assert balance_of(ok(call(side, "rollbackDeposit", body_text(token, "d-2")))) == 75
    assert side.wallet(player.player_id) == (75, 0, 0)
    session = ok(call(side, "verifySession", body_text(token)))
    assert session["playerId"] == player.player_id and session["currencyCode"] == "XAG"
    assert balance_of(session) == 75
