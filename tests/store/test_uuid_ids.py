"""Platform ids stored as ``uuid`` on PostgreSQL (migration 0014), seen as ``str`` on both."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import asyncpg

from qwallet.domain.transactions import Kind
from qwallet.store.postgres import PostgresStore

from .conftest import PG_URL, Backend, _admin, _with_database
from .world import (
    NOW_MS,
    begin_call,
    confirm_call,
    entries_of,
    rollback_call,
    standard_world,
)

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

UUID_COLUMNS = {
    ("transactions", "qw_transaction_id"),
    ("transaction_keys", "qw_transaction_id"),
    ("ledger_entries", "transaction_id"),
    ("hold_resolutions", "qw_transaction_id"),
    ("payment_orders", "qw_transaction_id"),
}

_TYPES = (
    "SELECT table_name, column_name, data_type FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND data_type IN ('uuid', 'text')"
)


async def _column_types(url: str) -> dict[tuple[str, str], str]:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        rows = await connection.fetch(_TYPES)
    finally:
        await connection.close()
    return {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}


def test_ids_are_str_in_python_on_both(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        opened = await store.begin(begin_call())
        assert isinstance(opened.qw_transaction_id, str)
        assert CANONICAL.fullmatch(opened.qw_transaction_id)
        confirmed = await store.confirm(confirm_call())
        assert confirmed.qw_transaction_id == opened.qw_transaction_id
        rolled = await store.rollback(rollback_call(Kind.DEPOSIT, "never-sent"))
        assert CANONICAL.fullmatch(rolled.qw_transaction_id)
        async with store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT qw_transaction_id FROM transactions WHERE qw_transaction_id = $1",
                opened.qw_transaction_id,
            )
            key = await tx.fetchrow(
                "SELECT qw_transaction_id FROM transaction_keys WHERE mm_transaction_id = 'm1'"
            )
            adjustment = await tx.fetchrow(
                "SELECT a.id, e.adjustment_id FROM adjustments a"
                " JOIN ledger_entries e ON e.adjustment_id = a.id LIMIT 1"
            )
        assert row == {"qw_transaction_id": opened.qw_transaction_id}
        assert key == {"qw_transaction_id": opened.qw_transaction_id}
        assert adjustment is not None
        assert adjustment["id"] == adjustment["adjustment_id"] == "adj-p1"
        assert len(await entries_of(store, opened.qw_transaction_id)) == 4

    backend.run(scenario)
    if backend.name == "postgres":
        types = asyncio.run(_column_types(backend.url))
        assert {column: types[column] for column in UUID_COLUMNS} == dict.fromkeys(
            UUID_COLUMNS, "uuid"
        )
        # Ids that may come from outside stay text.
        assert types[("players", "id")] == types[("transactions", "mm_transaction_id")] == "text"
        assert types[("transactions", "player_id")] == types[("payment_orders", "id")] == "text"
        # An entry's adjustment_id may name an archived month (``archive:YYYY-MM``).
        assert types[("ledger_entries", "adjustment_id")] == types[("adjustments", "id")] == "text"


def _snapshot_sql() -> str:
    return (
        "SELECT (SELECT string_agg(qw_transaction_id::text, ',' ORDER BY mm_transaction_id)"
        "          FROM transactions) AS transactions,"
        " (SELECT string_agg(qw_transaction_id::text, ',' ORDER BY mm_transaction_id)"
        "    FROM transaction_keys) AS keys,"
        " (SELECT string_agg(COALESCE(transaction_id::text, adjustment_id::text), ','"
        "    ORDER BY id) FROM ledger_entries) AS entries,"
        " (SELECT string_agg(id::text, ',' ORDER BY id::text) FROM adjustments) AS adjustments,"
        " (SELECT string_agg(qw_transaction_id::text, ',') FROM hold_resolutions) AS holds,"
        " (SELECT string_agg(qw_transaction_id::text, ',') FROM payment_orders) AS orders"
    )


async def _seed_at_0012(url: str) -> tuple[str, dict[str, Any]]:
    store = await PostgresStore.open(url, pool_min=1, pool_max=2)
    try:
        await standard_world(store)
        opened = await store.begin(begin_call())
        await store.confirm(confirm_call())
        await store.begin(begin_call(mm="m2"))  # left pending
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO hold_resolutions (qw_transaction_id, at_ms, actor, action)"
                " VALUES ($1, $2, 'resolver', 'retry_later')",
                opened.qw_transaction_id,
                NOW_MS,
            )
            await tx.execute(
                "INSERT INTO payment_orders (id, partner_id, player_id, cp_order_id, server_id,"
                " product_id, product_number, product_price, amount_minor, currency, ext_params,"
                " state, qw_transaction_id, created_at_ms, updated_at_ms)"
                " VALUES ('o1', 1, 'p1', 'cp1', '1', 'gem', 1, '1.00', 100, 'XAG', '{}', 'paid',"
                " $1, $2, $2)",
                opened.qw_transaction_id,
                NOW_MS,
            )
            snapshot = await tx.fetchrow(_snapshot_sql())
        assert snapshot is not None
        return opened.qw_transaction_id, snapshot
    finally:
        await store.close()


async def _replays_and_snapshot(url: str, qw_id: str) -> dict[str, Any]:
    """The confirmed withdrawal replays with its id, the pending one confirms, a new one opens."""
    store = await PostgresStore.open(url, pool_min=1, pool_max=2)
    try:
        assert (await store.begin(begin_call())).qw_transaction_id == qw_id
        assert (await store.confirm(confirm_call())).qw_transaction_id == qw_id
        async with store.transaction() as tx:
            snapshot = await tx.fetchrow(_snapshot_sql())
        assert snapshot is not None
        return snapshot
    finally:
        await store.close()


async def _begin_source(url: str) -> str:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        return str(
            await connection.fetchval(
                "SELECT prosrc FROM pg_proc WHERE proname = 'wallet_v1_begin' AND pronargs = 11"
            )
        )
    finally:
        await connection.close()


def test_migration_0014_converts_the_ids_and_back(backend: Backend, tmp_path: Path) -> None:
    from alembic import command

    from qwallet.store.migrate import alembic_config, upgrade

    if backend.name == "sqlite":  # nothing to convert: text stays text
        url = f"sqlite:///{tmp_path}/migrations.db"
        upgrade(url)
        command.downgrade(alembic_config(url), "0013")
        upgrade(url)
        return

    name = f"{backend.url.rsplit('/', 1)[1]}_uuid"
    asyncio.run(_admin(PG_URL, f"CREATE DATABASE {name}"))
    try:
        url = _with_database(PG_URL, name)
        config = alembic_config(url)
        command.upgrade(config, "0012")
        assert asyncio.run(_column_types(url))[("transactions", "qw_transaction_id")] == "text"
        qw_id, before = asyncio.run(_seed_at_0012(url))
        assert all(before[column] for column in before), before

        upgrade(url)
        types = asyncio.run(_column_types(url))
        assert {column: types[column] for column in UUID_COLUMNS} == dict.fromkeys(
            UUID_COLUMNS, "uuid"
        )
        assert asyncio.run(_replays_and_snapshot(url, qw_id)) == before

        # Down again: text columns, the same ids, and the functions of 0012 answer the same.
        command.downgrade(config, "0013")
        types = asyncio.run(_column_types(url))
        assert {column: types[column] for column in UUID_COLUMNS} == dict.fromkeys(
            UUID_COLUMNS, "text"
        )
        assert asyncio.run(_replays_and_snapshot(url, qw_id)) == before
        assert "gen_random_uuid()::text" in asyncio.run(_begin_source(url))
        upgrade(url)
        assert asyncio.run(_replays_and_snapshot(url, qw_id)) == before
        assert "gen_random_uuid()::text" not in asyncio.run(_begin_source(url))
    finally:
        asyncio.run(_admin(PG_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
