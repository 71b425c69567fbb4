"""Monthly partitions (PostgreSQL) and the key table that keeps ids unique across them."""

from __future__ import annotations

import time
from typing import Any

from qwallet.domain.transactions import Kind
from qwallet.service import archive

from .conftest import Backend
from .world import DAY_MS, add_session, begin_call, confirm_call, standard_world

NOW_MS = time.time_ns() // 1_000_000
YEAR_MS = 366 * 86_400_000


async def _partition_of(store: Any, table: str, where: str) -> str:
    async with store.transaction() as tx:
        row = await tx.fetchrow(f"SELECT tableoid::regclass::text AS p FROM {table} WHERE {where}")
    assert row is not None
    return str(row["p"])


def test_months_ahead_and_a_row_no_month_covers(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        created = await archive.ensure_partitions(store, NOW_MS)
        if backend.name == "sqlite":
            assert created == 0  # one table
            return
        # The migration made this month and the next three: nothing to do.
        assert created == 0
        await standard_world(store)
        far_ms = NOW_MS + 2 * YEAR_MS
        far = archive.Month.of(far_ms)
        await add_session(
            store, "t-far", "p1", last_seen_at_ms=far_ms, expires_at_ms=far_ms + DAY_MS
        )
        call = begin_call(Kind.DEPOSIT, "far-1", 100, token="t-far", now_ms=far_ms)
        first = await store.begin(call)
        # No month covers it: the default partition takes it, and the money call worked.
        where = "mm_transaction_id = 'far-1'"
        assert await _partition_of(store, "transactions", where) == (
            "qwallet_partitions.transactions_default"
        )
        # Creating the month moves its rows out of the default partition.
        assert await archive.ensure_partitions_between(store, far_ms, far_ms) == 2
        assert await _partition_of(store, "transactions", where) == (
            f"qwallet_partitions.transactions_{far.suffix}"
        )
        assert await _partition_of(store, "ledger_entries", f"created_at_ms = {far_ms}") == (
            f"qwallet_partitions.ledger_entries_{far.suffix}"
        )
        # The replay finds it through its key, in its new partition; the confirm moves it on.
        assert await store.begin(call) == first
        await store.confirm(confirm_call(Kind.DEPOSIT, "far-1", 100, token="t-far", now_ms=far_ms))
        async with store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT state FROM transactions WHERE mm_transaction_id = 'far-1'"
            )
        assert row is not None and row["state"] == "confirmed"

    backend.run(scenario)


def test_an_id_is_claimed_once_across_months(backend: Backend) -> None:
    """The key table, not a partition's index, holds (partner, mmTransactionId, kind)."""

    async def scenario(store: Any) -> None:
        await standard_world(store)
        await store.begin(begin_call(Kind.WITHDRAWAL, "m-1", 100))
        later = NOW_MS + 40 * DAY_MS
        await add_session(
            store, "t-later", "p1", last_seen_at_ms=later, expires_at_ms=later + DAY_MS
        )
        again = await store.begin(
            begin_call(Kind.WITHDRAWAL, "m-1", 100, token="t-later", now_ms=later)
        )
        async with store.transaction() as tx:
            row = await tx.fetchrow("SELECT COUNT(*) AS n FROM transactions")
            keys = await tx.fetchrow("SELECT COUNT(*) AS n FROM transaction_keys")
        assert row is not None and keys is not None
        assert (int(row["n"]), int(keys["n"])) == (1, 1)
        assert again.balance_minor == 100_000 - 100

    backend.run(scenario)
