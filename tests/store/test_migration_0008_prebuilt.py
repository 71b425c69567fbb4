"""Migration 0008 over indexes an operator built beforehand with ``CREATE INDEX CONCURRENTLY``.

The statements are the ones docs/operations.md gives ("Upgrading a large database to 0008"), run
one at a time on a live database at revision 0007 (a writer inserting meanwhile); the upgraded
schema must be exactly that of a fresh database. An index left INVALID by an interrupted build is
rebuilt; one of the same name on other columns stops the upgrade with its name.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Iterator

import asyncpg
import pytest

from qwallet.store.migrate import upgrade
from tests.store.migration_db import documented_lines, postgres_databases, schema

pytestmark = pytest.mark.postgres

MARKER = "-- qwallet 0008 prebuilt indexes"


def documented_statements() -> list[str]:
    return documented_lines(MARKER)


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    with postgres_databases(2) as (first, second):
        yield first, second


async def prebuild_while_writing(url: str, statements: list[str]) -> None:
    """Run the documented statements while another connection keeps writing audit rows."""
    writer = await asyncpg.connect(url)
    builder = await asyncpg.connect(url)
    stop = asyncio.Event()

    async def write() -> int:
        written = 0
        while not stop.is_set():
            await writer.execute(
                "INSERT INTO audit_log (at_ms, operator, action, target, details)"
                " VALUES (1, 'tests', 'test.write', NULL, '{}')"
            )
            written += 1
            await asyncio.sleep(0)
        return written

    task = asyncio.create_task(write())
    try:
        for statement in statements:
            await builder.execute(statement)
    finally:
        stop.set()
        written = await task
        await writer.close()
        await builder.close()
    assert written > 0  # the table took writes during the concurrent builds


def test_documented_statements_cover_every_index_of_0008() -> None:
    statements = documented_statements()
    names = {re.search(r"EXISTS (\w+) ON", s).group(1) for s in statements}  # type: ignore[union-attr]
    # Every index 0008 builds on an existing (possibly large) table; its new tables are empty.
    migration = importlib.import_module("qwallet.store.migrations.versions.0008_growth")
    built = {name for name, _table, _columns in migration._INDEXES}
    built |= {"ix_ledger_entries_adjustment", migration.PREBUILT_MM_ID_INDEX}
    assert names == built
    assert all("CONCURRENTLY" in s for s in statements)


def test_upgrade_over_prebuilt_indexes_equals_a_fresh_upgrade(
    databases: tuple[str, str],
) -> None:
    prebuilt, fresh = databases
    upgrade(prebuilt, "0007")
    asyncio.run(prebuild_while_writing(prebuilt, documented_statements()))
    upgrade(prebuilt)
    upgrade(fresh)
    found, expected = asyncio.run(schema(prebuilt)), asyncio.run(schema(fresh))
    assert found == expected


def test_an_invalid_prebuilt_index_is_rebuilt_and_a_wrong_one_refused(
    databases: tuple[str, str],
) -> None:
    broken, wrong = databases
    upgrade(broken, "0007")

    async def invalidate() -> None:
        connection = await asyncpg.connect(broken)
        try:
            for statement in documented_statements()[:2]:
                await connection.execute(statement)
            # What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
            await connection.execute(
                "UPDATE pg_index SET indisvalid = false"
                " WHERE indexrelid = 'ix_transactions_created'::regclass"
            )
        finally:
            await connection.close()

    asyncio.run(invalidate())
    upgrade(broken)
    assert asyncio.run(schema(broken))["invalid"] == 0

    upgrade(wrong, "0007")

    async def misbuild() -> None:
        connection = await asyncpg.connect(wrong)
        try:
            await connection.execute("CREATE INDEX ix_players_created ON players (nickname)")
        finally:
            await connection.close()

    asyncio.run(misbuild())
    with pytest.raises(RuntimeError, match="ix_players_created"):
        upgrade(wrong)
