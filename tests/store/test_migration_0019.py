"""Migration 0019: the players search pages on ``ix_players_nickname (lower(nickname), id)``.

On both databases: a search (``queries.search_players`` with a text), its first page and a page
after a cursor, reads a range of the index in its order, without sorting and without reading
the other wallets (100,000 of them on PostgreSQL); up, down and up again keep the wallets. On
PostgreSQL also the documented prebuild (docs/operations.md, "Upgrading a large database to
0019"): a valid index built beforehand is kept, one left invalid is built again, one that is
another index stops the upgrade.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from qwallet.admin import queries
from qwallet.store.factory import Store
from qwallet.store.migrate import alembic_config, upgrade
from qwallet.store.postgres import PostgresStore
from qwallet.store.sql import Row, SqlTransaction
from qwallet.store.sqlite import SqliteStore, sqlite_path
from tests.store.migration_db import documented_lines, empty_database, postgres_databases, run

MARKER = "-- qwallet 0019 prebuilt index"
NEW = "ix_players_nickname"
BEFORE = "0018"
WALLETS = {"sqlite": 20_000, "postgres": 100_000}
RARE = 7  # nicknames "Rare-1" … "Rare-7" among random hex ones

_COLUMNS = (
    "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
    " held_minor, pending_in_minor, limit_day, day_withdrawn_minor, created_at_ms)"
)


def fill(url: str) -> None:
    if url.startswith("sqlite"):
        # generate_series is not in every SQLite build: a recursive count instead.
        run(
            url,
            f"{_COLUMNS} WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n"
            f" WHERE value < {WALLETS['sqlite']}) SELECT printf('p%07d', value),"
            f" CASE WHEN value <= {RARE} THEN 'Rare-' || value ELSE hex(randomblob(6)) END,"
            " 'XAG', 'en', 'active', 0, 0, 0, 0, 0, 1000 + value FROM n",
            "ANALYZE",
        )
    else:
        run(
            url,
            f"{_COLUMNS} SELECT 'p' || lpad(value::text, 7, '0'),"
            f" CASE WHEN value <= {RARE} THEN 'Rare-' || value ELSE md5(value::text) END,"
            " 'XAG', 'en', 'active', 0, 0, 0, 0, 0, 1000 + value"
            f" FROM generate_series(1, {WALLETS['postgres']}) AS value",
            "ANALYZE players",
        )


class _Recorded:
    def __init__(self, tx: SqlTransaction, log: list[tuple[str, tuple[object, ...]]]) -> None:
        self._tx, self._log = tx, log

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        self._log.append((sql, args))
        return await self._tx.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        self._log.append((sql, args))
        return await self._tx.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: object) -> int:
        self._log.append((sql, args))
        return await self._tx.execute(sql, *args)


class Recording:
    """The store, recording every statement the operator side runs on it."""

    def __init__(self, store: Store) -> None:
        self.store, self.dialect = store, store.dialect
        self.log: list[tuple[str, tuple[object, ...]]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self.store.transaction() as tx:
            yield _Recorded(tx, self.log)


async def _open(url: str) -> Store:
    if url.startswith("sqlite"):
        return SqliteStore(sqlite_path(url))
    return await PostgresStore.open(url, pool_min=1, pool_max=1)


async def _plan(store: Store, sql: str, args: tuple[object, ...]) -> str:
    async with store.transaction() as tx:
        if store.dialect == "sqlite":
            rows = await tx.fetch("EXPLAIN QUERY PLAN " + sql, *args)
            return "\n".join(str(list(row.values())[-1]) for row in rows)
        row = await tx.fetchrow("EXPLAIN (FORMAT JSON) " + sql, *args)
        assert row is not None
        document = next(iter(row.values()))
        plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]

    def walk(node: dict[str, Any], depth: int) -> list[str]:
        line = f"{'  ' * depth}{node['Node Type']} {node.get('Index Name', '')}"
        line += f" {node.get('Relation Name', '')} rows={node.get('Plan Rows')}"
        return [line] + [x for child in node.get("Plans", []) for x in walk(child, depth + 1)]

    return "\n".join(walk(plan, 0))


def search(url: str, text: str, pages: int = 1) -> tuple[list[list[str]], list[str]]:
    """``pages`` pages of the search (ids) and the plans of its nickname range statements."""

    async def main() -> tuple[list[list[str]], list[str]]:
        store = await _open(url)
        try:
            db = Recording(store)
            found, cursor = [], None
            for _ in range(pages):
                rows = await queries.search_players(db, text, cursor)
                found.append([str(r["id"]) for r in rows[: queries.PAGE_SIZE]])
                cursor = queries.next_players_cursor(rows, text)
                if cursor is None:
                    break
            ranges = [(sql, args) for sql, args in db.log if "ORDER BY" in sql]
            return found, [await _plan(store, sql, args) for sql, args in ranges]
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request.param, tmp_path) as url:
        yield url


def _assert_a_range_of_the_index(plan: str) -> None:
    assert NEW in plan, plan
    # In the index's order: no sort (SQLite says "USE TEMP B-TREE FOR ORDER BY") and no scan of
    # the table (SQLite: "SCAN players" without an index).
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    assert "Seq Scan" not in plan and "SCAN players\n" not in plan + "\n", plan


def test_a_search_is_a_range_of_the_index_up_down_and_up(database: str) -> None:
    upgrade(database, BEFORE)
    fill(database)
    rare = [f"p{n:07d}" for n in range(1, RARE + 1)]
    before, _ = search(database, "RARE-")
    assert before == [rare]

    upgrade(database)
    pages, plans = search(database, "rare-")
    assert pages == [rare]
    for plan in plans:
        _assert_a_range_of_the_index(plan)
    # A common prefix (one wallet in 16 on PostgreSQL): pages of 50 after cursors, each still a
    # range of about a page.
    pages, plans = search(database, "a", pages=3)
    assert [len(page) for page in pages] == [50, 50, 50]
    assert len({id_ for page in pages for id_ in page}) == 150
    assert len(plans) == 3
    for plan in plans:
        _assert_a_range_of_the_index(plan)

    command.downgrade(alembic_config(database), BEFORE)
    assert all(NEW not in plan for plan in search(database, "rare-")[1])
    upgrade(database)
    assert search(database, "Rare-")[0] == [rare]


# -- PostgreSQL: the documented prebuild -------------------------------------------------------


def documented_statement() -> str:
    (statement,) = documented_lines(MARKER)
    return statement


def index_oid(url: str) -> int:
    ((oid,),) = run(url, f"SELECT '{NEW}'::regclass::oid")[0]
    assert isinstance(oid, int)
    return oid


def index_definition(url: str) -> str:
    ((definition,),) = run(url, f"SELECT pg_get_indexdef('{NEW}'::regclass)")[0]
    return str(definition)


@pytest.fixture
def postgres() -> Iterator[str]:
    with postgres_databases(1) as (url,):
        upgrade(url, BEFORE)
        run(url, f"{_COLUMNS} VALUES ('p1', 'Ann', 'XAG', 'en', 'active', 0, 0, 0, 0, 0, 1)")
        yield url


def test_the_migration_builds_the_index_by_code_point(postgres: str) -> None:
    upgrade(postgres)
    assert index_definition(postgres).endswith('USING btree (lower(nickname) COLLATE "C", id)')


def test_a_prebuilt_index_is_kept(postgres: str) -> None:
    run(postgres, documented_statement())  # CONCURRENTLY: outside a transaction block
    before = index_oid(postgres)
    upgrade(postgres)
    assert index_oid(postgres) == before
    assert search(postgres, "ann")[0] == [["p1"]]


def test_an_invalid_prebuilt_index_is_built_again(postgres: str) -> None:
    run(postgres, documented_statement())
    # What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
    run(postgres, f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{NEW}'::regclass")
    before = index_oid(postgres)
    upgrade(postgres)
    assert index_oid(postgres) != before
    ((valid,),) = run(
        postgres, f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{NEW}'::regclass"
    )[0]
    assert valid is True


@pytest.mark.parametrize(
    "other",
    [
        f"CREATE INDEX {NEW} ON players (nickname)",
        # The right expression without the code point order: a prefix is not one range of it.
        f"CREATE INDEX {NEW} ON players (lower(nickname), id)",
    ],
)
def test_another_index_of_that_name_stops_the_upgrade(postgres: str, other: str) -> None:
    run(postgres, other)
    with pytest.raises(RuntimeError, match=NEW):
        upgrade(postgres)
    ((revision,),) = run(postgres, "SELECT version_num FROM alembic_version")[0]
    assert revision == BEFORE
