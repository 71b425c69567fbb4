"""A reconciliation batch that meets the store's statement bound is retried smaller.

On an old ledger with cold caches the first batches can take longer than the pool's bound
(10 s), which closes their connection. The run must then shrink the batch and go on, keeping
nothing of the failed attempt, instead of failing (service/reconcile.py, "Batches and the
statement bound"). Here the store is the real PostgreSQL store with a bound of
``BOUND_S``; a batch larger than the test allows first sleeps past that bound inside its own
transaction, so the real timer closes the real connection and the run sees the real
``StatementTimeoutError``. PostgreSQL only: SQLite has no statement bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from qwallet.service import reconcile
from qwallet.store.postgres import PostgresStore
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction, StatementTimeoutError
from tests.store.conftest import Backend
from tests.store.test_reconcile_checkpoints import execute, one, traffic
from tests.store.world import add_player, add_session, standard_world

BOUND_S = 1.0
PLAYERS = 12

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


class SlowLargeBatches:
    """The store, except that a batch above the allowed size outlasts the statement bound."""

    def __init__(self, store: PostgresStore, *, wallets: int, entries: int) -> None:
        self.dialect = store.dialect
        self.store = store
        self.wallets = wallets
        self.entries = entries
        self.timeouts: Counter[str] = Counter()
        self.sizes: dict[str, list[int]] = {"wallets": [], "entries": [], "ranges": []}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self.store.transaction() as tx:
            yield _SlowTransaction(tx, self)


class _SlowTransaction:
    def __init__(self, tx: SqlTransaction, owner: SlowLargeBatches) -> None:
        self._tx = tx
        self._owner = owner

    async def _maybe_slow(self, sql: str, args: tuple[object, ...]) -> None:
        owner = self._owner
        if sql == reconcile._BATCH_WALLETS:
            kind = "wallets"
            row = await self._tx.fetchrow(
                "SELECT COUNT(*) AS n FROM players WHERE id >= $1 AND id <= $2", *args[:2]
            )
            assert row is not None
            size, allowed = int(row["n"]), owner.wallets
        elif sql in (reconcile._CHUNK_COUNT, reconcile._UNBALANCED_STEPS):
            kind = "entries" if sql == reconcile._CHUNK_COUNT else "ranges"
            size, allowed = int(str(args[1])) - int(str(args[0])), owner.entries
        else:
            return
        owner.sizes[kind].append(size)
        if size > allowed:
            try:
                await self._tx.execute(f"SELECT pg_sleep({BOUND_S * 1.5})")
            except StatementTimeoutError:
                owner.timeouts[kind] += 1
                raise
            raise AssertionError("the statement bound did not close the connection")

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        await self._maybe_slow(sql, args)
        return await self._tx.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        await self._maybe_slow(sql, args)
        return await self._tx.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: object) -> int:
        await self._maybe_slow(sql, args)
        return await self._tx.execute(sql, *args)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches start at an eighth of these: 8 wallets, 8 entries.
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 64)
    monkeypatch.setattr(reconcile, "ENTRY_BATCH", 64)
    monkeypatch.setattr(reconcile, "RANGE_BATCH", 64)


async def many_players(store: SqlDatabase, first: int, count: int) -> None:
    for i in range(first, first + count):
        await add_player(store, f"q{i:02d}", available_minor=100_000)
        await add_session(store, f"s{i:02d}", f"q{i:02d}")
        await traffic(store, 0, 2, token=f"s{i:02d}")


def test_batches_that_meet_the_bound_are_retried_smaller_and_prove_the_same(
    backend: Backend, small_batches: None
) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await many_players(store, 0, PLAYERS)
        # Damage before the run: found once, however often its batch is retried.
        await execute(
            store, "UPDATE players SET available_minor = available_minor + 7 WHERE id = 'q05'"
        )
        expected = await reconcile.reconcile(store)
        assert [m["id"] for m in expected.balance_mismatches] == ["q05"]

        short = await PostgresStore.open(
            backend.url, pool_min=1, pool_max=4, command_timeout_s=BOUND_S
        )
        try:
            slow = SlowLargeBatches(short, wallets=2, entries=4)
            full = await reconcile.run_reconcile(slow, operator="tests", now_ms=1, full=True)
            assert slow.timeouts["wallets"] >= 1 and slow.timeouts["entries"] >= 1
            # After a timeout no batch grows back to the size that failed.
            assert slow.sizes["wallets"][0] == 8 and max(slow.sizes["wallets"][1:]) <= 4
            assert (full.players, full.transactions, full.entries) == (
                expected.players,
                expected.transactions,
                expected.entries,
            )
            assert full.balance_mismatches == expected.balance_mismatches
            assert not full.ok and not full.checkpoint

            await execute(
                store, "UPDATE players SET available_minor = available_minor - 7 WHERE id = 'q05'"
            )
            clean = await reconcile.run_reconcile(slow, operator="tests", now_ms=2, full=True)
            assert clean.ok and clean.checkpoint
            position = clean.position

            # The incremental run: its entry ranges are retried the same way.
            await many_players(store, PLAYERS, 3)
            new_entries = int(
                await one(store, "SELECT COUNT(*) FROM ledger_entries WHERE id > $1", position)
            )
            slow.timeouts.clear()
            later = await reconcile.run_reconcile(slow, operator="tests", now_ms=3)
            assert slow.timeouts["ranges"] >= 1
            assert later.ok and later.checkpoint and not later.full
            assert later.entries == new_entries and later.players == 3
        finally:
            await short.close()

    backend.run(scenario)


def test_a_single_wallet_that_meets_the_bound_fails_the_run(
    backend: Backend, small_batches: None
) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await many_players(store, 0, 3)
        short = await PostgresStore.open(
            backend.url, pool_min=1, pool_max=4, command_timeout_s=BOUND_S
        )
        try:
            slow = SlowLargeBatches(short, wallets=0, entries=1_000)
            with pytest.raises(StatementTimeoutError):
                await reconcile.run_reconcile(slow, operator="tests", now_ms=1, full=True)
            # All six wallets (of the eight asked for), then a quarter of eight (2), then 1:
            # nothing smaller to try.
            assert slow.sizes["wallets"] == [6, 2, 1]
            assert slow.timeouts["wallets"] == 3
        finally:
            await short.close()

    backend.run(scenario)
