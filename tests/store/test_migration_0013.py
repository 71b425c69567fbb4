"""Migration 0013: the partial index of the pending transactions replaces ``ix_transactions_state``,
``ix_transactions_mm_id`` goes; up and down on both databases, over stored rows.

On PostgreSQL also over partition indexes an operator built beforehand with the documented
statements (docs/operations.md, "Upgrading a large database to 0013"), run while another
connection writes transactions: the upgrade attaches them (the same index, not a second build)
and the schema is that of a fresh database; a partition index left invalid by an interrupted
build is replaced; an ``ix_transactions_pending`` of other columns stops the upgrade.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic import command

from qwallet.store.migrate import alembic_config, upgrade
from tests.store import migration_db
from tests.store.migration_db import documented_lines, empty_database, postgres_databases, run

MARKER = "-- qwallet 0013 prebuilt indexes"
OLD = {"ix_transactions_state", "ix_transactions_mm_id"}
NEW = "ix_transactions_pending"
NOW_MS = int(time.time() * 1000)

# A partner, a player, and four transactions with their keys: a pending withdrawal, a pending
# deposit, a confirmed withdrawal and a rolled-back deposit (SQL both databases run).
ROWS = [
    "INSERT INTO partners (id, name, created_at_ms) VALUES (1, 'studio', 0)",
    "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
    " held_minor, pending_in_minor, limit_day, day_withdrawn_minor, created_at_ms)"
    " VALUES ('p1', 'one', 'XAG', 'en', 'active', 100, 5, 7, 0, 0, 0)",
    *(
        "INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id,"
        " player_id, amount_minor, currency, state, created_at_ms, updated_at_ms)"
        f" VALUES ('{qw}', 1, '{kind}', '{mm}', 'p1', 5, 'XAG', '{state}', {at}, {at})"
        for qw, kind, mm, state, at in (
            ("00000000-0000-4000-8000-000000000001", "withdrawal", "mm-1", "pending", NOW_MS - 4),
            ("00000000-0000-4000-8000-000000000002", "deposit", "mm-2", "pending", NOW_MS - 3),
            ("00000000-0000-4000-8000-000000000003", "withdrawal", "mm-3", "confirmed", NOW_MS - 2),
            ("00000000-0000-4000-8000-000000000004", "deposit", "mm-4", "rolled_back", NOW_MS - 1),
        )
    ),
    "INSERT INTO transaction_keys (partner_id, mm_transaction_id, kind, qw_transaction_id,"
    " created_at_ms) SELECT partner_id, mm_transaction_id, kind, qw_transaction_id,"
    " created_at_ms FROM transactions",
]


def documented_query() -> str:
    lines = documented_lines(MARKER)
    assert lines[-1] == "\\gexec"  # psql runs each generated statement on its own
    return "\n".join(lines[:-1])


# -- both databases ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of either kind (not migrated)."""
    with empty_database(request.param, tmp_path) as url:
        yield url


def indexes(url: str) -> dict[str, str]:
    """The indexes of ``transactions`` (the parent's on PostgreSQL): name → definition."""
    if url.startswith("sqlite"):
        sql = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transactions'"
        )
    else:
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'transactions'"
    return {str(name): str(definition) for name, definition in run(url, sql)[0]}


def pending_plan(url: str) -> str:
    """The plan of a range of the pending withdrawals (the hold resolver's and the dashboard's)."""
    sql = (
        "SELECT qw_transaction_id FROM transactions WHERE state = 'pending'"
        f" AND kind = 'withdrawal' AND created_at_ms <= {NOW_MS} ORDER BY created_at_ms"
    )
    if url.startswith("sqlite"):
        return "\n".join(str(row[-1]) for row in run(url, "EXPLAIN QUERY PLAN " + sql)[0])
    (rows,) = run(url, "SET enable_seqscan = off", "EXPLAIN " + sql)[1:]
    return "\n".join(str(row[0]) for row in rows)


def test_upgrade_and_downgrade_over_stored_rows(database: str) -> None:
    upgrade(database, "0012")
    run(database, *ROWS)
    assert set(indexes(database)) >= OLD and NEW not in indexes(database)

    upgrade(database)
    found = indexes(database)
    assert not OLD & set(found)
    assert "(created_at_ms, kind)" in found[NEW].replace('"', "")
    assert "state = 'pending'" in found[NEW]
    plan = pending_plan(database)
    assert NEW in plan or "created_at_ms_kind_idx" in plan, plan  # a partition's copy
    # Only the pending rows are in it (SQLite reads the index itself when told to).
    if database.startswith("sqlite"):
        ((n,),) = run(
            database,
            f"SELECT COUNT(*) FROM transactions INDEXED BY {NEW} WHERE state = 'pending'",
        )[0]
        assert n == 2
    ((total,),) = run(database, "SELECT COUNT(*) FROM transactions")[0]
    assert total == 4

    command.downgrade(alembic_config(database), "0012")
    found = indexes(database)
    assert set(found) >= OLD and NEW not in found
    assert run(database, "SELECT COUNT(*) FROM transactions")[0] == [(4,)]

    upgrade(database)
    assert NEW in indexes(database) and not OLD & set(indexes(database))


# -- PostgreSQL: indexes built beforehand -----------------------------------------------------


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    with postgres_databases(2) as (first, second):
        yield first, second


async def schema(url: str) -> dict[str, object]:
    """The application schema, and the definitions of the partitions' indexes (without their
    names, which PostgreSQL chooses for the ones it builds)."""
    return await migration_db.schema(url, partitions_of="transactions")


async def prebuild_while_writing(url: str) -> dict[str, int]:
    """The documented statements, one at a time, while another connection keeps recording
    transactions (with their keys); answers the built indexes' oids by name."""
    writer = await asyncpg.connect(url)
    builder = await asyncpg.connect(url)
    stop = asyncio.Event()

    async def write() -> int:
        written = 0
        while not stop.is_set():
            written += 1
            async with writer.transaction():
                await writer.execute(
                    "INSERT INTO transactions (qw_transaction_id, partner_id, kind,"
                    " mm_transaction_id, player_id, amount_minor, currency, state,"
                    " created_at_ms, updated_at_ms)"
                    " VALUES ($1, 1, 'withdrawal', $1, 'p1', 1, 'XAG', 'pending', $2, $2)",
                    str(uuid.UUID(int=1000 + written)),  # a uuid column from 0014 on
                    NOW_MS + written,
                )
            await asyncio.sleep(0)
        return written

    task = asyncio.create_task(write())
    try:
        statements = [str(row[0]) for row in await builder.fetch(documented_query())]
        for statement in statements:
            assert "CONCURRENTLY" in statement
            await builder.execute(statement)
        built = await builder.fetch(
            "SELECT c.relname, c.oid FROM pg_class c"
            " WHERE c.relnamespace = 'qwallet_partitions'::regnamespace"
            " AND c.relkind = 'i' AND c.relname LIKE '%\\_pending'"
        )
    finally:
        stop.set()
        written = await task
        await writer.close()
        await builder.close()
    assert written > 0  # the table took writes during the concurrent builds
    assert len(built) == len(statements) >= 2  # the default partition and the months
    return {str(row["relname"]): int(row["oid"]) for row in built}


async def attached(url: str) -> dict[str, int]:
    """The partition indexes of ``ix_transactions_pending``: name → oid."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT c.relname, c.oid FROM pg_partition_tree('ix_transactions_pending') t"
            " JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
        )
    finally:
        await connection.close()
    return {str(row["relname"]): int(row["oid"]) for row in rows}


def test_upgrade_over_prebuilt_partition_indexes_equals_a_fresh_upgrade(
    databases: tuple[str, str],
) -> None:
    prebuilt, fresh = databases
    upgrade(prebuilt, "0012")
    run(prebuilt, *ROWS)
    built = asyncio.run(prebuild_while_writing(prebuilt))
    upgrade(prebuilt)
    # Attached, not built again: the very indexes built beforehand.
    assert asyncio.run(attached(prebuilt)) == built
    upgrade(fresh)
    assert asyncio.run(schema(prebuilt)) == asyncio.run(schema(fresh))


def test_an_invalid_prebuilt_index_is_replaced_and_a_wrong_one_refused(
    databases: tuple[str, str],
) -> None:
    broken, wrong = databases
    upgrade(broken, "0012")
    run(broken, *ROWS)

    async def interrupt() -> str:
        connection = await asyncpg.connect(broken)
        try:
            statements = [str(row[0]) for row in await connection.fetch(documented_query())]
            await connection.execute(statements[0])
            name = statements[0].split(" EXISTS ", 1)[1].split(" ", 1)[0]
            # What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
            await connection.execute(
                "UPDATE pg_index SET indisvalid = false"
                f" WHERE indexrelid = 'qwallet_partitions.{name}'::regclass"
            )
            return name
        finally:
            await connection.close()

    name = asyncio.run(interrupt())
    upgrade(broken)
    assert asyncio.run(schema(broken))["invalid"] == 0
    assert name not in asyncio.run(attached(broken))  # dropped; a new one was built

    upgrade(wrong, "0012")
    run(wrong, "CREATE INDEX ix_transactions_pending ON transactions (state)")
    with pytest.raises(RuntimeError, match="ix_transactions_pending"):
        upgrade(wrong)
