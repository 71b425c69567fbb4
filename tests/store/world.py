"""A small world to test against: partners, players with funds, sessions, and call builders.

Seeded with plain SQL through ``store.transaction()`` so that both backends get the same rows.
Funds enter through an operator adjustment with its two ledger entries, so that the ledger
invariants hold from the first row on.
"""

from __future__ import annotations

from typing import Any

import pytest

from qwallet.domain.errors import WalletError
from qwallet.domain.transactions import Kind
from qwallet.store.port import BeginCall, ConfirmCall, RollbackCall
from qwallet.store.sql import SqlDatabase

NOW_MS = 1_780_000_000_000
SECOND_MS = 1_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
IDLE_MS = 30 * MINUTE_MS
LIFETIME_MS = DAY_MS
MAX_BALANCE_MINOR = 1_000_000_000 * 100

PARTNER = 1
OTHER_PARTNER = 2
FUNDS_MINOR = 100_000  # 1000.00 XAG


async def add_partner(db: SqlDatabase, partner_id: int, name: str) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO partners (id, name, created_at_ms) VALUES ($1, $2, $3)",
            partner_id,
            name,
            NOW_MS,
        )


async def add_player(
    db: SqlDatabase,
    player_id: str,
    *,
    currency: str = "XAG",
    available_minor: int = 0,
    status: str = "active",
    daily_withdraw_limit_minor: int | None = None,
) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
            " held_minor, pending_in_minor, daily_withdraw_limit_minor, limit_day,"
            " day_withdrawn_minor, created_at_ms)"
            " VALUES ($1, $2, $3, 'en', $4, $5, 0, 0, $6, 0, 0, $7)",
            player_id,
            f"nick-{player_id}",
            currency,
            status,
            available_minor,
            daily_withdraw_limit_minor,
            NOW_MS,
        )
        if available_minor:
            adjustment_id = f"adj-{player_id}"
            await tx.execute(
                "INSERT INTO adjustments (id, player_id, amount_minor, currency, reason,"
                " operator, created_at_ms) VALUES ($1, $2, $3, $4, 'seed', 'tests', $5)",
                adjustment_id,
                player_id,
                available_minor,
                currency,
                NOW_MS,
            )
            for account, player, amount in (
                ("operator", None, -available_minor),
                ("available", player_id, available_minor),
            ):
                await tx.execute(
                    "INSERT INTO ledger_entries (adjustment_id, phase, account, player_id,"
                    " currency, amount_minor, created_at_ms)"
                    " VALUES ($1, 'adjust', $2, $3, $4, $5, $6)",
                    adjustment_id,
                    account,
                    player,
                    currency,
                    amount,
                    NOW_MS,
                )


async def add_session(
    db: SqlDatabase,
    token: str,
    player_id: str,
    partner_id: int = PARTNER,
    *,
    last_seen_at_ms: int = NOW_MS,
    expires_at_ms: int = NOW_MS + LIFETIME_MS,
    revoked_at_ms: int | None = None,
) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO sessions (token, player_id, partner_id, game_code, created_at_ms,"
            " last_seen_at_ms, idle_timeout_ms, expires_at_ms, revoked_at_ms)"
            " VALUES ($1, $2, $3, 'demo', $4, $5, $6, $7, $8)",
            token,
            player_id,
            partner_id,
            NOW_MS,
            last_seen_at_ms,
            IDLE_MS,
            expires_at_ms,
            revoked_at_ms,
        )


async def standard_world(db: SqlDatabase) -> None:
    """Partners 1 and 2; players p1, p2 (XAG, 1000.00 each) and p3 (EUR, empty).

    Sessions: t1 → p1, t2 → p2, t3 → p3 at partner 1; t1-other → p1 at partner 2.
    """
    await add_partner(db, PARTNER, "mm")
    await add_partner(db, OTHER_PARTNER, "other")
    await add_player(db, "p1", available_minor=FUNDS_MINOR)
    await add_player(db, "p2", available_minor=FUNDS_MINOR)
    await add_player(db, "p3", currency="EUR")
    await add_session(db, "t1", "p1")
    await add_session(db, "t2", "p2")
    await add_session(db, "t3", "p3")
    await add_session(db, "t1-other", "p1", OTHER_PARTNER)


def begin_call(
    kind: Kind = Kind.WITHDRAWAL,
    mm: str = "m1",
    amount_minor: int = 1_000,
    *,
    token: str = "t1",
    currency: str = "XAG",
    partner_id: int = PARTNER,
    now_ms: int = NOW_MS,
    description: str | None = "Test Shopping.",
    max_balance_minor: int = MAX_BALANCE_MINOR,
) -> BeginCall:
    return BeginCall(
        partner_id,
        kind,
        token,
        mm,
        amount_minor,
        currency,
        description,
        max_balance_minor,
        now_ms,
    )


def confirm_call(
    kind: Kind = Kind.WITHDRAWAL,
    mm: str = "m1",
    amount_minor: int = 1_000,
    *,
    token: str = "t1",
    currency: str = "XAG",
    partner_id: int = PARTNER,
    now_ms: int = NOW_MS,
) -> ConfirmCall:
    return ConfirmCall(partner_id, kind, token, mm, amount_minor, currency, now_ms)


def rollback_call(
    kind: Kind = Kind.WITHDRAWAL,
    mm: str = "m1",
    *,
    token: str = "t1",
    partner_id: int = PARTNER,
    now_ms: int = NOW_MS,
    reason: str | None = "Withdraw request failed.",
) -> RollbackCall:
    return RollbackCall(partner_id, kind, token, mm, reason, now_ms)


async def failure(call: Any) -> tuple[int, str, dict[str, Any]]:
    """Await ``call``, which must fail with a ``WalletError``; its (code, description, extra)."""
    with pytest.raises(WalletError) as info:
        await call
    return int(info.value.code), info.value.description, info.value.extra


async def outcome(call: Any) -> Any:
    """The result of ``call``, or the ``WalletError`` it raised."""
    try:
        return await call
    except WalletError as error:
        return error


async def player_row(db: SqlDatabase, player_id: str) -> dict[str, Any]:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT * FROM players WHERE id = $1", player_id)
    assert row is not None
    return dict(row)


async def transaction_row(
    db: SqlDatabase, mm: str, kind: Kind = Kind.WITHDRAWAL, partner_id: int = PARTNER
) -> dict[str, Any] | None:
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT * FROM transactions WHERE partner_id = $1 AND kind = $2"
            " AND mm_transaction_id = $3",
            partner_id,
            kind.value,
            mm,
        )
    return None if row is None else dict(row)


async def entries_of(db: SqlDatabase, qw_transaction_id: str) -> list[tuple[Any, ...]]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT phase, account, player_id, partner_id, currency, amount_minor"
            " FROM ledger_entries WHERE transaction_id = $1 ORDER BY id",
            qw_transaction_id,
        )
    return [tuple(row.values()) for row in rows]


async def count(db: SqlDatabase, sql: str, *args: object) -> int:
    async with db.transaction() as tx:
        row = await tx.fetchrow(sql, *args)
    assert row is not None
    return int(next(iter(row.values())))


async def check_invariants(db: SqlDatabase) -> None:
    """The ledger proves the cached balances, and every transaction's entries fit its state."""
    async with db.transaction() as tx:
        unbalanced = await tx.fetch(
            "SELECT transaction_id, adjustment_id FROM ledger_entries"
            " GROUP BY transaction_id, adjustment_id HAVING SUM(amount_minor) <> 0"
        )
        assert unbalanced == []
        mismatched = await tx.fetch(
            "SELECT p.id FROM players p LEFT JOIN ledger_entries e ON e.player_id = p.id"
            " GROUP BY p.id, p.available_minor, p.held_minor, p.pending_in_minor"
            " HAVING p.available_minor <> COALESCE(SUM(CASE WHEN e.account = 'available'"
            "   THEN e.amount_minor ELSE 0 END), 0)"
            " OR p.held_minor <> COALESCE(SUM(CASE WHEN e.account = 'held'"
            "   THEN e.amount_minor ELSE 0 END), 0)"
            " OR p.pending_in_minor <> COALESCE(SUM(CASE WHEN e.account = 'pending_in'"
            "   THEN e.amount_minor ELSE 0 END), 0)"
        )
        assert mismatched == []
        negative = await tx.fetch(
            "SELECT id FROM players"
            " WHERE available_minor < 0 OR held_minor < 0 OR pending_in_minor < 0"
        )
        assert negative == []
        misowned = await tx.fetch(
            "SELECT id FROM ledger_entries WHERE"
            " (account = 'partner' AND (player_id IS NOT NULL OR partner_id IS NULL))"
            " OR (account IN ('available', 'held', 'pending_in')"
            "     AND (player_id IS NULL OR partner_id IS NOT NULL))"
        )
        assert misowned == []
        transactions = await tx.fetch(
            "SELECT t.qw_transaction_id, t.state, t.amount_minor,"
            " SUM(CASE WHEN e.phase = 'begin' THEN 1 ELSE 0 END) AS begins,"
            " SUM(CASE WHEN e.phase = 'confirm' THEN 1 ELSE 0 END) AS confirms,"
            " SUM(CASE WHEN e.phase = 'rollback' THEN 1 ELSE 0 END) AS rollbacks"
            " FROM transactions t LEFT JOIN ledger_entries e"
            " ON e.transaction_id = t.qw_transaction_id"
            " GROUP BY t.qw_transaction_id, t.state, t.amount_minor"
        )
    expected = {
        "pending": (2, 0, 0),
        "confirmed": (2, 2, 0),
        "rolled_back": (2, 0, 2),
    }
    for row in transactions:
        phases = (int(row["begins"] or 0), int(row["confirms"] or 0), int(row["rollbacks"] or 0))
        if row["amount_minor"] is None:  # a rollback that blocked its original
            assert row["state"] == "rolled_back" and phases == (0, 0, 0), row
        else:
            assert phases == expected[row["state"]], row
