"""Migration 0015: the players list pages on ``ix_players_created_id (created_at_ms, id)``.

On both databases: the console's players page (``queries.search_players``) reads the index in
its order, without sorting the wallets, even when they share one creation time; up, down and
up again keep the wallets. On PostgreSQL also the documented prebuild (docs/operations.md,
"Upgrading a large database to 0015"): a valid index built beforehand is kept (the same index,
not a second build), one left invalid is built again, one on other columns stops the upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command

from qwallet.store.migrate import alembic_config, upgrade
from tests.store.migration_db import documented_lines, empty_database, postgres_databases, run

MARKER = "-- qwallet 0015 prebuilt index"
NEW = "ix_players_created_id"
WALLETS = 3000

# The page query of ``queries.search_players`` without a search text, after a cursor.
PAGE = (
    "SELECT id FROM players WHERE (created_at_ms, id) < (1000, 'p0001500')"
    " ORDER BY created_at_ms DESC, id DESC LIMIT 51"
)
# Every wallet created in the same millisecond, as an import or a bulk load makes them.
FILL_PG = (
    "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
    " held_minor, pending_in_minor, limit_day, day_withdrawn_minor, created_at_ms)"
    " SELECT 'p' || lpad(value::text, 7, '0'), 'n', 'XAG', 'en', 'active', 0, 0, 0, 0, 0, 1000"
    f" FROM generate_series(1, {WALLETS}) AS value"
)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request.param, tmp_path) as url:
        yield url


def fill(url: str) -> None:
    if url.startswith("sqlite"):
        # generate_series is not in every SQLite build: a recursive count instead.
        run(
            url,
            "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
            " held_minor, pending_in_minor, limit_day, day_withdrawn_minor, created_at_ms)"
            " WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n"
            f" WHERE value < {WALLETS}) SELECT printf('p%07d', value), 'n', 'XAG', 'en',"
            " 'active', 0, 0, 0, 0, 0, 1000 FROM n",
            "ANALYZE",
        )
    else:
        run(url, FILL_PG, "ANALYZE players")


def page_plan(url: str) -> str:
    if url.startswith("sqlite"):
        return "\n".join(str(row[-1]) for row in run(url, "EXPLAIN QUERY PLAN " + PAGE)[0])
    return "\n".join(str(row[0]) for row in run(url, "EXPLAIN " + PAGE)[0])


def page(url: str) -> list[str]:
    return [str(row[0]) for row in run(url, PAGE)[0]]


def test_the_players_page_is_a_range_of_the_index_up_down_and_up(database: str) -> None:
    upgrade(database, "0014")
    fill(database)
    expected = [f"p{n:07d}" for n in range(1499, 1499 - 51, -1)]
    assert page(database) == expected

    upgrade(database)
    plan = page_plan(database)
    assert NEW in plan, plan
    # In the index's order: no sort of the wallets (SQLite says "USE TEMP B-TREE FOR ORDER BY").
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    assert page(database) == expected

    command.downgrade(alembic_config(database), "0014")
    assert NEW not in page_plan(database)
    assert page(database) == expected
    upgrade(database)
    assert NEW in page_plan(database)
    assert page(database) == expected


# -- PostgreSQL: the documented prebuild -------------------------------------------------------


def documented_statement() -> str:
    (statement,) = documented_lines(MARKER)
    return statement


def index_oid(url: str) -> int:
    ((oid,),) = run(url, f"SELECT '{NEW}'::regclass::oid")[0]
    assert isinstance(oid, int)
    return oid


@pytest.fixture
def postgres() -> Iterator[str]:
    with postgres_databases(1) as (url,):
        upgrade(url, "0014")
        fill(url)
        yield url


def test_a_prebuilt_index_is_kept(postgres: str) -> None:
    run(postgres, documented_statement())  # CONCURRENTLY: outside a transaction block
    before = index_oid(postgres)
    upgrade(postgres)
    assert index_oid(postgres) == before
    assert NEW in page_plan(postgres)


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


def test_an_index_of_that_name_on_other_columns_stops_the_upgrade(postgres: str) -> None:
    run(postgres, f"CREATE INDEX {NEW} ON players (nickname)")
    with pytest.raises(RuntimeError, match=NEW):
        upgrade(postgres)
    ((revision,),) = run(postgres, "SELECT version_num FROM alembic_version")[0]
    assert revision == "0014"
