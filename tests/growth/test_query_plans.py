"""Every operator and periodic query is an index range on a grown PostgreSQL database.

A database of ``TRANSACTIONS`` settled transactions (and their entries, orders, audit entries)
is generated with ``generate_series`` and analysed; each console page query, the hold
resolver's scan, the payment worker's scan, the metrics gauges, the dashboard, both kinds of
reconciliation and a pass of the settlement summarizer run through a wrapper that records
``EXPLAIN`` of every statement. None may read ``transactions``, ``ledger_entries``, ``payment_orders``, ``audit_log`` or
``hold_resolutions`` with a sequential scan. (``players`` may be: the dashboard sums the
wallets, which grows with wallets, not with history. The players search does not: it is a
range of ``ix_players_nickname``, checked here and by ``tests/store/test_migration_0019.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwallet.admin import queries
from qwallet.api.metrics import read_database_gauges
from qwallet.clock import ManualClock
from qwallet.domain.money import CurrencyRegistry, parse_currency_config
from qwallet.domain.sessions import MS_PER_DAY
from qwallet.domain.transactions import Kind
from qwallet.payments.delivery import Deliverer, DeliveryPolicy
from qwallet.service import audit, holds, orders_admin, reconcile, settlement_days
from qwallet.store.postgres import PostgresStore
from tests.conftest import fresh_database_url
from tests.growth.explain import ExplainingDatabase, Plan
from tests.growth.generate import BASE_MS, grow

TRANSACTIONS = 60_000
NOW_MS = BASE_MS + TRANSACTIONS * 20 + 60_000
Call = Callable[[Any], Awaitable[Any]]


def _calls(newest: dict[str, Any]) -> dict[str, Call]:
    tx_cursor = f"{newest['created_at_ms']}_{newest['qw_transaction_id']}"
    f = queries.TransactionFilter
    return {
        "dashboard": lambda db: queries.dashboard(db, NOW_MS - 3_600_000),
        # The generated backlog is minutes old: with a window of one minute all of it is overdue.
        "dashboard, backlog overdue": lambda db: queries.dashboard(db, NOW_MS - 60_000),
        "players page": lambda db: queries.search_players(db, ""),
        "players page 2": lambda db: queries.search_players(db, "", f"{BASE_MS + 2500}_p0002500"),
        "player by id": lambda db: queries.search_players(db, "p0000042"),
        # Nicknames "nick <n>": every wallet matches "nick", a page is still one of the index.
        "players search": lambda db: queries.search_players(db, "NICK 4"),
        "players search page 2": lambda db: queries.search_players(db, "nick", "p0002500"),
        "player activity": lambda db: queries.player_activity(db, "p0000042"),
        "transactions": lambda db: queries.transactions(db, f()),
        "transactions page 2": lambda db: queries.transactions(db, f(), tx_cursor),
        "transactions by player": lambda db: queries.transactions(db, f(player="p0000042")),
        "transactions by player page 2": lambda db: queries.transactions(
            db, f(player="p0000042"), tx_cursor
        ),
        # Until migration 0010's (partner_id, created_at_ms) index, the time index filtered.
        "transactions by partner": lambda db: queries.transactions(db, f(partner="studio-2")),
        "transactions by state": lambda db: queries.transactions(db, f(state="rolled_back")),
        "transactions pending": lambda db: queries.transactions(db, f(state="pending")),
        "transactions by kind": lambda db: queries.transactions(db, f(kind="deposit")),
        "transactions by mm id": lambda db: queries.transactions(db, f(mm_id="mm-31337")),
        "transactions by partner and mm id": lambda db: queries.transactions(
            db, f(partner="studio-2", mm_id="mm-31337")
        ),
        "transactions by date": lambda db: queries.transactions(
            db, f(date_from="2026-05-28", date_to="2026-05-29")
        ),
        "transaction detail": lambda db: queries.transaction_detail(
            db, str(newest["qw_transaction_id"])
        ),
        "orders": lambda db: orders_admin.list_orders(db, None, limit=51),
        "orders page 2": lambda db: orders_admin.list_orders(
            db, None, limit=51, cursor=f"{BASE_MS + 500_000}_o5000"
        ),
        "orders by state": lambda db: orders_admin.list_orders(db, "failed", limit=51),
        "order counts": orders_admin.counts_by_state,
        "audit": lambda db: audit.entries(db, limit=51),
        "audit page 2": lambda db: audit.entries(db, limit=51, before_id=10_000),
        "audit by operator": lambda db: audit.entries(db, operator="op-3", limit=51),
        "audit by action": lambda db: audit.entries(db, action="player.adjust", limit=51),
        "audit by target": lambda db: audit.entries(db, target="p0000042", limit=20),
        "resolution log": lambda db: holds.resolutions(db, limit=51),
        "resolution log page 2": lambda db: holds.resolutions(db, limit=51, before_id=100),
        "hold resolver scan": lambda db: holds.overdue(db, Kind.WITHDRAWAL, NOW_MS, 100),
        "overdue deposits": lambda db: holds.overdue(db, Kind.DEPOSIT, NOW_MS, 100),
        "metrics gauges": lambda db: read_database_gauges(db, NOW_MS - 3_600_000),
        "metrics gauges, backlog overdue": lambda db: read_database_gauges(db, NOW_MS - 60_000),
        "payment worker scan": _deliver_due,
        "reconcile (incremental)": lambda db: reconcile.incremental(db, NOW_MS),
        # Two days on, the generated day is closed: the horizon's seek, the done marks, and
        # the summing of one day (at most 3 per pass here).
        "settlement summarizer pass": lambda db: settlement_days.Summarizer(db, 3).run_once(
            NOW_MS + 2 * MS_PER_DAY
        ),
    }


async def _deliver_due(db: Any) -> int:
    # At BASE_MS no order is due yet, so the scan runs and nothing is sent.
    async with httpx.AsyncClient() as client:
        currencies = CurrencyRegistry(parse_currency_config("XAG:2"))
        deliverer = Deliverer(db, ManualClock(BASE_MS), client, DeliveryPolicy(), currencies)
        return await deliverer.deliver_due()


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for url in fresh_database_url("postgres", tmp_path_factory.mktemp("grown")):
        asyncio.run(grow(url, TRANSACTIONS))
        yield url


def _plans(url: str, calls: Callable[[dict[str, Any]], dict[str, Call]]) -> list[Plan]:
    async def main() -> list[Plan]:
        store = await PostgresStore.open(url, pool_min=1, pool_max=2)
        try:
            async with store.transaction() as tx:
                newest = await tx.fetchrow(
                    "SELECT created_at_ms, qw_transaction_id FROM transactions"
                    " ORDER BY created_at_ms DESC LIMIT 1 OFFSET 60"
                )
            assert newest is not None
            db = ExplainingDatabase(store)
            for label, call in calls(dict(newest)).items():
                db.label = label
                await call(db)
            return db.plans
        finally:
            await store.close()

    return asyncio.run(main())


async def _catalogue(url: str, sql: str) -> frozenset[str]:
    store = await PostgresStore.open(url, pool_min=1, pool_max=1)
    try:
        async with store.transaction() as tx:
            return frozenset(str(row["name"]) for row in await tx.fetch(sql))
    finally:
        await store.close()


# The partitions no generated row falls in (the months ahead): reading them whole costs nothing.
_EMPTY_PARTITIONS = """
SELECT c.relname AS name FROM pg_partition_tree('transactions') t JOIN pg_class c ON c.oid = t.relid
 WHERE t.isleaf AND NOT EXISTS (SELECT 1 FROM transactions x WHERE x.tableoid = c.oid)
UNION ALL
SELECT c.relname FROM pg_partition_tree('ledger_entries') t JOIN pg_class c ON c.oid = t.relid
 WHERE t.isleaf AND NOT EXISTS (SELECT 1 FROM ledger_entries x WHERE x.tableoid = c.oid)
"""


def _index_tree(name: str) -> str:
    """An index and, of a partitioned table, the indexes of its partitions (named by
    PostgreSQL)."""
    return (
        f"SELECT '{name}' AS name UNION SELECT c.relname FROM pg_partition_tree('{name}'::regclass)"
        " t JOIN pg_class c ON c.oid = t.relid"
    )


def test_operator_and_periodic_queries_use_indexes(grown: str) -> None:
    plans = _plans(grown, _calls)
    labels = {plan.label for plan in plans}
    assert labels == set(_calls({"created_at_ms": 0, "qw_transaction_id": ""}))
    empty = asyncio.run(_catalogue(grown, _EMPTY_PARTITIONS))
    scans = [
        f"{p.label}: {p.seq_scans(empty)}\n{p.sql}\n{p.text()}" for p in plans if p.seq_scans(empty)
    ]
    assert not scans, "\n\n".join(scans)


# The queries of the pending backlog (migration 0013's partial index) and the lookups by
# mmTransactionId (the key's primary key, migration 0013 dropped the copy on transactions).
# (With a window that ends before the oldest row, a range of the time index that reads nothing
# is as good: the labels here have the backlog inside their window.)
_PENDING_READERS = (
    "dashboard, backlog overdue",
    "transactions pending",
    "hold resolver scan",
    "overdue deposits",
    "metrics gauges, backlog overdue",
)
_KEY_LOOKUPS = ("transactions by mm id", "transactions by partner and mm id")


def test_the_players_search_is_a_range_of_its_index(grown: str) -> None:
    plans = _plans(grown, _calls)
    for label in ("players search", "players search page 2"):
        (page,) = [p for p in plans if p.label == label and "ORDER BY" in p.sql]
        assert "ix_players_nickname" in page.index_names(), f"{label}\n{page.text()}"
        types = {str(node["Node Type"]) for node in page.nodes()}
        assert not types & {"Sort", "Seq Scan", "Incremental Sort"}, f"{label}\n{page.text()}"


def test_the_backlog_is_read_through_the_pending_index_and_ids_through_their_keys(
    grown: str,
) -> None:
    plans = _plans(grown, _calls)
    pending = asyncio.run(_catalogue(grown, _index_tree("ix_transactions_pending")))
    keys = asyncio.run(_catalogue(grown, _index_tree("transaction_keys_pkey")))
    assert {"ix_transactions_pending"} < pending  # partitioned: built on every partition
    for label in _PENDING_READERS:
        read = [p for p in plans if p.label == label and "FROM transactions" in p.sql]
        read = [p for p in read if "state = " in p.sql]
        assert read, label
        for plan in read:
            assert plan.index_names() & pending, f"{label}\n{plan.sql}\n{plan.text()}"
            assert "ix_transactions_state" not in plan.text()
    for label in _KEY_LOOKUPS:
        (plan,) = [p for p in plans if p.label == label and "transaction_keys" in p.sql]
        assert plan.index_names() & keys, f"{label}\n{plan.sql}\n{plan.text()}"


def test_the_reconciles_hold_checks_probe_the_pending_backlog_by_player(
    grown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Migration 0017: not ix_transactions_player, which holds every transaction of a wallet.
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 20)

    def calls(_newest: dict[str, Any]) -> dict[str, Call]:
        return {
            "reconcile --full": lambda db: reconcile.reconcile(db, lambda d, t: None),
            "reconcile (incremental)": lambda db: reconcile.incremental(db, NOW_MS),
        }

    plans = _plans(grown, calls)
    by_player = asyncio.run(_catalogue(grown, _index_tree("ix_transactions_pending_player")))
    history = asyncio.run(_catalogue(grown, _index_tree("ix_transactions_player")))
    backlog = asyncio.run(_catalogue(grown, _index_tree("ix_transactions_pending")))
    checks = [p for p in plans if "t.player_id = p.id AND t.state = 'pending'" in p.sql]
    assert {p.label for p in checks} == {"reconcile --full", "reconcile (incremental)"}
    for plan in checks:
        assert plan.index_names() & by_player, f"{plan.label}\n{plan.sql}\n{plan.text()}"
        assert not plan.index_names() & history, f"{plan.label}\n{plan.text()}"
        # A probe per wallet, never the whole backlog for a batch (a hash join over it made the
        # cost of a batch grow with the backlog: docs/benchmarks.md).
        assert not plan.index_names() & backlog, f"{plan.label}\n{plan.text()}"
        assert "Hash Join" not in plan.text(), f"{plan.label}\n{plan.text()}"


def test_full_reconcile_batches_use_indexes(
    grown: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A batch is a small part of a large database (500 of 100,000 wallets by default): so here.
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 20)
    monkeypatch.setattr(reconcile, "ENTRY_BATCH", 5_000)
    seen: list[tuple[int, int]] = []

    def calls(_newest: dict[str, Any]) -> dict[str, Call]:
        return {
            "reconcile --full": lambda db: reconcile.reconcile(db, lambda d, t: seen.append((d, t)))
        }

    plans = _plans(grown, calls)
    empty = asyncio.run(_catalogue(grown, _EMPTY_PARTITIONS))
    scans = [f"{p.seq_scans(empty)}\n{p.sql}\n{p.text()}" for p in plans if p.seq_scans(empty)]
    assert not scans, "\n\n".join(scans)
    assert seen and seen[-1][0] == seen[-1][1] > 10
