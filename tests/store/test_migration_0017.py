"""Migration 0017: ``ix_transactions_pending_player (player_id) WHERE state = 'pending'``.

On both databases: up, down and up again over stored rows; a wallet's pending transactions are
read through the index (the reconcile's hold check), and only the pending rows are in it. On
PostgreSQL also the documented prebuild (docs/operations.md, "Upgrading a large database to
0017"): prebuilt partition indexes are attached, not built again, and the schema equals a fresh
upgrade's; one left invalid is replaced; an index of that name on other columns stops the upgrade.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic import command

from qwallet.store.migrate import alembic_config, upgrade
from tests.store import migration_db
from tests.store.migration_db import documented_lines, empty_database, postgres_databases, run
from tests.store.test_migration_0013 import ROWS

MARKER = "-- qwallet 0017 prebuilt indexes"
NEW = "ix_transactions_pending_player"

# The hold check of the reconcile (service/reconcile.py, _WALLET_HOLDS) for one wallet.
HOLDS = (
    "SELECT p.id, COALESCE(SUM(t.amount_minor), 0) FROM players p"
    " LEFT JOIN transactions t ON t.player_id = p.id AND t.state = 'pending'"
    " WHERE p.id IN ('p1') GROUP BY p.id"
)


def documented_query() -> str:
    lines = documented_lines(MARKER)
    assert lines[-1] == "\\gexec"  # psql runs each generated statement on its own
    return "\n".join(lines[:-1])


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request.param, tmp_path) as url:
        yield url


def holds_plan(url: str) -> str:
    if url.startswith("sqlite"):
        return "\n".join(str(row[-1]) for row in run(url, "EXPLAIN QUERY PLAN " + HOLDS)[0])
    (rows,) = run(url, "SET enable_seqscan = off", "EXPLAIN " + HOLDS)[1:]
    return "\n".join(str(row[0]) for row in rows)


def uses_new_index(plan: str) -> bool:
    # PostgreSQL names the partitions' copies it builds after the column: *_player_id_idx.
    return NEW in plan or "player_id_idx" in plan


def test_upgrade_and_downgrade_over_stored_rows(database: str) -> None:
    upgrade(database, "0016")
    run(database, *ROWS)
    assert run(database, HOLDS)[0] == [("p1", 10)]  # the two pending rows, 5 each
    assert not uses_new_index(holds_plan(database))

    upgrade(database)
    plan = holds_plan(database)
    assert uses_new_index(plan), plan
    assert run(database, HOLDS)[0] == [("p1", 10)]
    if database.startswith("sqlite"):
        ((n,),) = run(
            database, f"SELECT COUNT(*) FROM transactions INDEXED BY {NEW} WHERE state = 'pending'"
        )[0]
        assert n == 2  # only the pending rows are in it

    command.downgrade(alembic_config(database), "0016")
    assert not uses_new_index(holds_plan(database))
    assert run(database, "SELECT COUNT(*) FROM transactions")[0] == [(4,)]
    upgrade(database)
    assert uses_new_index(holds_plan(database))


# -- PostgreSQL: indexes built beforehand -----------------------------------------------------


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    with postgres_databases(2) as (first, second):
        for url in (first, second):
            upgrade(url, "0016")
        run(first, *ROWS)
        yield first, second


async def attached(url: str) -> dict[str, int]:
    """The partition indexes of the new index: name → oid."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            f"SELECT c.relname, c.oid FROM pg_partition_tree('{NEW}') t"
            " JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
        )
    finally:
        await connection.close()
    return {str(row["relname"]): int(row["oid"]) for row in rows}


async def prebuild(url: str) -> dict[str, int]:
    """Runs the documented statements one at a time; answers the built indexes by name."""
    connection = await asyncpg.connect(url)
    try:
        statements = [str(row[0]) for row in await connection.fetch(documented_query())]
        assert len(statements) >= 2  # the default partition and the months
        for statement in statements:
            assert "CONCURRENTLY" in statement
            await connection.execute(statement)
        built = await connection.fetch(
            "SELECT relname, oid FROM pg_class WHERE relkind = 'i'"
            " AND relnamespace = 'qwallet_partitions'::regnamespace"
            " AND relname LIKE '%\\_pending\\_player'"
        )
    finally:
        await connection.close()
    assert len(built) == len(statements)
    return {str(row["relname"]): int(row["oid"]) for row in built}


def test_upgrade_over_prebuilt_partition_indexes_equals_a_fresh_upgrade(
    databases: tuple[str, str],
) -> None:
    prebuilt, fresh = databases
    built = asyncio.run(prebuild(prebuilt))
    upgrade(prebuilt)
    assert asyncio.run(attached(prebuilt)) == built  # the very indexes built beforehand
    upgrade(fresh)
    ours = asyncio.run(migration_db.schema(prebuilt, partitions_of="transactions"))
    assert ours == asyncio.run(migration_db.schema(fresh, partitions_of="transactions"))


def test_an_invalid_prebuilt_index_is_replaced_and_a_wrong_one_refused(
    databases: tuple[str, str],
) -> None:
    broken, wrong = databases
    built = asyncio.run(prebuild(broken))
    name = sorted(built)[0]
    # What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
    run(
        broken,
        f"UPDATE pg_index SET indisvalid = false"
        f" WHERE indexrelid = 'qwallet_partitions.{name}'::regclass",
    )
    upgrade(broken)
    assert asyncio.run(migration_db.schema(broken, partitions_of="transactions"))["invalid"] == 0
    now = asyncio.run(attached(broken))
    assert name not in now and len(now) == len(built)  # dropped; a new one was built

    run(wrong, f"CREATE INDEX {NEW} ON transactions (created_at_ms) WHERE state = 'pending'")
    with pytest.raises(RuntimeError, match=NEW):
        upgrade(wrong)
    assert run(wrong, "SELECT version_num FROM alembic_version")[0] == [("0016",)]
