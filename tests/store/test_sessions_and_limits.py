"""Sessions (live, or accepted when expired), blocked players, funds and limits: both backends."""

from __future__ import annotations

from typing import Any

import pytest

from qwallet.domain.transactions import Kind
from qwallet.store.port import BalanceView, SessionView

from .conftest import Backend
from .world import (
    DAY_MS,
    FUNDS_MINOR,
    IDLE_MS,
    MINUTE_MS,
    NOW_MS,
    OTHER_PARTNER,
    PARTNER,
    SECOND_MS,
    add_partner,
    add_player,
    add_session,
    begin_call,
    check_invariants,
    confirm_call,
    failure,
    player_row,
    rollback_call,
    standard_world,
    transaction_row,
)

KINDS = [Kind.WITHDRAWAL, Kind.DEPOSIT]
UNKNOWN = (110, "Unknown or revoked session token.", {})
EXPIRED = (111, "Session expired.", {})
BLOCKED = (112, "Player is blocked.", {})


async def last_seen(store: Any, token: str) -> int:
    async with store.transaction() as tx:
        row = await tx.fetchrow("SELECT last_seen_at_ms FROM sessions WHERE token = $1", token)
    return int(row["last_seen_at_ms"])


async def session_world(store: Any) -> None:
    await standard_world(store)
    await add_player(store, "blocked", available_minor=10_000, status="blocked")
    await add_session(store, "t-blocked", "blocked")
    await add_session(store, "t-revoked", "p1", revoked_at_ms=NOW_MS - 1)
    # Idle for exactly the idle timeout, and past the absolute lifetime while recently seen.
    await add_session(store, "t-idle", "p1", last_seen_at_ms=NOW_MS - IDLE_MS)
    await add_session(store, "t-old", "p1", expires_at_ms=NOW_MS)


def test_verify_session_and_get_balance(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await session_world(store)
        assert await store.verify_session(PARTNER, "t1", NOW_MS) == SessionView(
            "p1", "nick-p1", "XAG", "en", FUNDS_MINOR
        )
        assert await store.get_balance(PARTNER, "t3", NOW_MS) == BalanceView("EUR", 0)
        assert await store.verify_session(OTHER_PARTNER, "t1-other", NOW_MS) == SessionView(
            "p1", "nick-p1", "XAG", "en", FUNDS_MINOR
        )

    backend.run(scenario)


@pytest.mark.parametrize("method", ["verify_session", "get_balance"])
def test_session_reads_refuse_bad_tokens(backend: Backend, method: str) -> None:
    async def scenario(store: Any) -> None:
        await session_world(store)
        call = getattr(store, method)
        assert await failure(call(PARTNER, "made-up", NOW_MS)) == UNKNOWN
        assert await failure(call(OTHER_PARTNER, "t1", NOW_MS)) == UNKNOWN
        assert await failure(call(PARTNER, "t1-other", NOW_MS)) == UNKNOWN
        assert await failure(call(PARTNER, "t-revoked", NOW_MS)) == UNKNOWN
        assert await failure(call(PARTNER, "t-idle", NOW_MS)) == EXPIRED
        assert await failure(call(PARTNER, "t-old", NOW_MS)) == EXPIRED
        assert await failure(call(PARTNER, "t-blocked", NOW_MS)) == BLOCKED
        # One millisecond before the idle timeout, the session is still live.
        assert (await call(PARTNER, "t-idle", NOW_MS - 1)) is not None

    backend.run(scenario)


def test_session_touch_is_coarse(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await session_world(store)
        await store.get_balance(PARTNER, "t1", NOW_MS + 59 * SECOND_MS)
        assert await last_seen(store, "t1") == NOW_MS
        await store.verify_session(PARTNER, "t1", NOW_MS + MINUTE_MS)
        assert await last_seen(store, "t1") == NOW_MS + MINUTE_MS
        # A money call refreshes it too, and keeps a nearly idle session alive.
        later = NOW_MS + MINUTE_MS + IDLE_MS - 1
        await store.begin(begin_call(mm="m1", now_ms=later))
        assert await last_seen(store, "t1") == later
        assert await store.get_balance(PARTNER, "t1", later + IDLE_MS - 1) is not None

    backend.run(scenario)


def test_failed_calls_do_not_touch_the_session(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await session_world(store)
        later = NOW_MS + 5 * MINUTE_MS
        assert (await failure(store.begin(begin_call(amount_minor=FUNDS_MINOR + 1, now_ms=later))))[
            0
        ] == 121
        assert (await failure(store.begin(begin_call(currency="EUR", now_ms=later))))[0] == 120
        assert await last_seen(store, "t1") == NOW_MS
        # Confirm and rollback never refresh it (they are accepted when expired).
        await store.begin(begin_call(mm="m1", now_ms=NOW_MS))
        await store.confirm(confirm_call(mm="m1", now_ms=later))
        await store.rollback(rollback_call(mm="m2", now_ms=later))
        assert await last_seen(store, "t1") == NOW_MS

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_begin_needs_a_live_session(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await session_world(store)
        for token, expected in (
            ("made-up", UNKNOWN),
            ("t1-other", UNKNOWN),
            ("t-revoked", UNKNOWN),
            ("t-idle", EXPIRED),
            ("t-old", EXPIRED),
            ("t-blocked", BLOCKED),
        ):
            assert await failure(store.begin(begin_call(kind, token=token))) == expected, token
        assert await transaction_row(store, "m1", kind) is None
        # The session is checked before everything else, the currency included.
        assert await failure(store.begin(begin_call(kind, token="t-idle", currency="EUR"))) == (
            EXPIRED
        )

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_confirm_and_rollback_accept_expired_sessions(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await session_world(store)
        await store.begin(begin_call(kind, "m1", 1_000))
        await store.begin(begin_call(kind, "m2", 1_000))
        much_later = NOW_MS + 2 * DAY_MS
        assert await failure(store.begin(begin_call(kind, "m3", now_ms=much_later))) == EXPIRED
        confirmed = await store.confirm(confirm_call(kind, "m1", 1_000, now_ms=much_later))
        rolled = await store.rollback(rollback_call(kind, "m2", now_ms=much_later))
        assert confirmed.mm_transaction_id == "m1" and rolled.mm_transaction_id == "m2"
        # Another expired token of the same player works as well.
        assert await store.confirm(
            confirm_call(kind, "m1", 1_000, token="t-old", now_ms=much_later)
        ) == (confirmed)
        # So does a revoked one (sign-out and block revoke tokens: held funds must stay
        # releasable), but not an unknown token or one of another partner.
        assert await store.confirm(confirm_call(kind, "m1", 1_000, token="t-revoked")) == (
            confirmed
        )
        assert await failure(store.rollback(rollback_call(kind, "m1", token="made-up"))) == (
            UNKNOWN
        )
        assert await failure(
            store.rollback(rollback_call(kind, "m1", token="t1", partner_id=OTHER_PARTNER))
        ) == (UNKNOWN)
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_player_can_still_confirm_and_roll_back(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await session_world(store)
        await store.begin(begin_call(kind, "m1", 1_000))
        await store.begin(begin_call(kind, "m2", 1_000))
        async with store.transaction() as tx:
            assert (
                await tx.execute("UPDATE players SET status = 'blocked' WHERE id = $1", "p1") == 1
            )
        assert await failure(store.begin(begin_call(kind, "m3"))) == BLOCKED
        assert await failure(store.verify_session(PARTNER, "t1", NOW_MS)) == BLOCKED
        confirmed = await store.confirm(confirm_call(kind, "m1"))
        assert confirmed.mm_transaction_id == "m1"
        rolled = await store.rollback(rollback_call(kind, "m2"))
        assert rolled.mm_transaction_id == "m2"
        blocker = await store.rollback(rollback_call(kind, "m3"))
        assert blocker.balance_minor == rolled.balance_minor
        await check_invariants(store)

    backend.run(scenario)


# -- funds and limits ----------------------------------------------------------------------------


def test_insufficient_funds_is_121_with_the_balance(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await store.begin(begin_call(mm="m1", amount_minor=FUNDS_MINOR - 500))
        before = await player_row(store, "p1")
        assert await failure(store.begin(begin_call(mm="m2", amount_minor=501))) == (
            121,
            "Insufficient funds.",
            {"balance": 500},
        )
        assert await player_row(store, "p1") == before
        assert await transaction_row(store, "m2") is None
        # Exactly the balance is fine; a replay of a spent withdrawal is still a replay.
        assert (await store.begin(begin_call(mm="m3", amount_minor=500))).balance_minor == 0
        assert (await store.begin(begin_call(mm="m1", amount_minor=FUNDS_MINOR - 500))) == (
            await store.begin(begin_call(mm="m1", amount_minor=FUNDS_MINOR - 500))
        )
        await check_invariants(store)

    backend.run(scenario)


def test_daily_withdrawal_limit_is_122(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await add_partner(store, PARTNER, "mm")
        await add_player(store, "p1", available_minor=FUNDS_MINOR, daily_withdraw_limit_minor=5_000)
        await add_session(store, "t1", "p1", expires_at_ms=NOW_MS + 10 * DAY_MS)
        limit_error = (122, "Daily withdrawal limit exceeded.", {})
        await store.begin(begin_call(mm="a", amount_minor=3_000))
        assert await failure(store.begin(begin_call(mm="b", amount_minor=2_001))) == limit_error
        await store.begin(begin_call(mm="c", amount_minor=2_000))
        # A rollback does not give the day's allowance back (engine behaviour).
        await store.rollback(rollback_call(mm="c"))
        assert await failure(store.begin(begin_call(mm="d", amount_minor=1))) == limit_error
        # Deposits are not limited.
        await store.begin(begin_call(Kind.DEPOSIT, "e", 50_000))
        # The limit comes before the funds: above both is 122, not 121.
        assert (
            await failure(store.begin(begin_call(mm="f", amount_minor=FUNDS_MINOR * 10)))
            == limit_error
        )
        # The next UTC day starts afresh.
        next_day = (NOW_MS // DAY_MS + 1) * DAY_MS
        await add_session(store, "t1b", "p1", last_seen_at_ms=next_day)
        await store.begin(begin_call(mm="g", amount_minor=5_000, token="t1b", now_ms=next_day))
        player = await player_row(store, "p1")
        assert (player["limit_day"], player["day_withdrawn_minor"]) == (next_day // DAY_MS, 5_000)
        await check_invariants(store)

    backend.run(scenario)


def test_deposit_above_the_maximum_balance_is_102(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        maximum = FUNDS_MINOR + 10_000
        await store.begin(begin_call(Kind.DEPOSIT, "d1", 4_000, max_balance_minor=maximum))
        # Pending deposits count: 100000 + 4000 pending + 6001 > maximum.
        assert await failure(
            store.begin(begin_call(Kind.DEPOSIT, "d2", 6_001, max_balance_minor=maximum))
        ) == (102, "Deposit would take the wallet above its maximum balance.", {})
        assert await transaction_row(store, "d2", Kind.DEPOSIT) is None
        await store.begin(begin_call(Kind.DEPOSIT, "d2", 6_000, max_balance_minor=maximum))
        await check_invariants(store)

    backend.run(scenario)
