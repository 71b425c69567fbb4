"""Time-ordered transaction ids (UUID version 7, migration 0018), on both databases.

The ids a withdraw, a deposit and a blocking rollback create carry the call's clock in their
first 48 bits, version 7 and the RFC variant; they are distinct when many calls of the same
millisecond run at once (74 random bits), and ids of calls a few milliseconds apart sort in the
order of the calls. ``domain/ids.py`` (SQLite engine, payments) and ``store/sql/ids_v1.sql``
(the wallet functions) build the same layout. Migration 0018 up, down and up over stored rows:
stored ids stay what they were, and the downgrade puts back exactly the functions a database of
revision 0017 had.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command

from qwallet.domain.ids import is_platform_id, new_transaction_id
from qwallet.domain.transactions import Kind
from qwallet.store.migrate import alembic_config, upgrade
from qwallet.store.postgres import PostgresStore, read_sql, split_sql
from qwallet.store.sqlite import SqliteStore, sqlite_path
from tests.store.migration_db import empty_database, run

from .conftest import Backend
from .world import (
    NOW_MS,
    add_session,
    begin_call,
    confirm_call,
    rollback_call,
    standard_world,
)

RANDOM_BITS = (*range(62), *range(64, 76))
"""Positions of the random bits in the 128: below the variant, and between variant and version."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def assert_v7(text: str, created_ms: int) -> None:
    """``text`` is a canonical version-7 UUID whose timestamp is ``created_ms``."""
    assert is_platform_id(text), text
    value = uuid.UUID(text)
    assert value.version == 7, text
    assert value.variant == uuid.RFC_4122, text  # the bits 10
    assert value.int >> 80 == created_ms, (text, created_ms)


def test_the_python_layout() -> None:
    before = now_ms()
    ids = [new_transaction_id(now_ms()) for _ in range(2_000)]
    after = now_ms()
    assert len(set(ids)) == len(ids)
    for text in ids:
        value = uuid.UUID(text)
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert before <= value.int >> 80 <= after
    # The 74 random bits are random: over 2,000 ids both values at every position.
    randoms = [uuid.UUID(text).int for text in ids]
    for bit in RANDOM_BITS:
        assert {r >> bit & 1 for r in randoms} == {0, 1}, bit
    # Ids of later milliseconds sort after, as text too (lower-case hex, fixed width).
    later = [new_transaction_id(before + step) for step in (0, 1, 2, 1_000, 86_400_000)]
    assert sorted(later) == later


def test_ids_of_withdraw_deposit_and_rollback_follow_the_calls_clock(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        start = NOW_MS  # the world's clock: its sessions are live then
        created: list[tuple[str, int]] = []
        for index, kind in enumerate((Kind.WITHDRAWAL, Kind.DEPOSIT) * 3):
            at = start + 3 * index  # calls a few milliseconds apart
            opened = await store.begin(begin_call(kind, f"m{index}", now_ms=at))
            assert_v7(opened.qw_transaction_id, at)
            created.append((opened.qw_transaction_id, at))
            if index % 2:
                confirmed = await store.confirm(confirm_call(kind, f"m{index}", now_ms=at + 1))
                assert confirmed.qw_transaction_id == opened.qw_transaction_id
        # A rollback of a transaction that never arrived records one, with an id of its own.
        at = start + 100
        blocked = await store.rollback(rollback_call(Kind.WITHDRAWAL, "never-sent", now_ms=at))
        assert_v7(blocked.qw_transaction_id, at)
        created.append((blocked.qw_transaction_id, at))
        # A replay answers the stored id, whatever its clock.
        replay = await store.begin(begin_call(Kind.WITHDRAWAL, "m0", now_ms=at + 1))
        assert replay.qw_transaction_id == created[0][0]

        ids = [qw for qw, _ in created]
        assert sorted(ids) == ids  # time order, as text
        async with store.transaction() as tx:
            stored = await tx.fetch(
                "SELECT qw_transaction_id FROM transactions ORDER BY qw_transaction_id"
            )
        assert [row["qw_transaction_id"] for row in stored] == ids  # and as stored (uuid on PG)

    backend.run(scenario)


def test_ids_of_one_millisecond_are_distinct_under_concurrency(backend: Backend) -> None:
    calls = 120

    async def scenario(store: Any) -> None:
        await standard_world(store)
        for index in range(calls):
            await add_session(store, f"c{index}", "p1" if index % 2 else "p2")
        at = NOW_MS
        # Every call of the same millisecond: only the random bits tell the ids apart.
        results = await asyncio.gather(
            *(
                store.begin(begin_call(Kind.DEPOSIT, f"c{index}", 1, token=f"c{index}", now_ms=at))
                for index in range(calls)
            )
        )
        ids = [result.qw_transaction_id for result in results]
        assert len(set(ids)) == calls
        for text in ids:
            assert_v7(text, at)

    backend.run(scenario, pool_max=10)


# -- the SQL function ----------------------------------------------------------------------


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def test_the_sql_function_has_the_python_layout(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("the SQL function exists on PostgreSQL only")
    at = now_ms()
    rows = asyncio.run(
        _fetch(
            backend.url,
            "SELECT qwallet_uuid_v7($1)::text AS id FROM generate_series(1, 2000)",
            at,
        )
    )
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    python = new_transaction_id(at)
    for text in ids:
        assert_v7(text, at)
        assert text[:15] == python[:15]  # the same timestamp and version digits
    # The planner inlines it (one expression, no FROM): no per-call function executor.
    plan = asyncio.run(_fetch(backend.url, "EXPLAIN VERBOSE SELECT qwallet_uuid_v7(1)"))
    assert "gen_random_uuid()" in "\n".join(row[0] for row in plan)
    # The 74 random bits are random: both values seen at every position.
    randoms = [uuid.UUID(text).int for text in ids]
    for bit in RANDOM_BITS:
        assert {r >> bit & 1 for r in randoms} == {0, 1}, bit


# -- migration 0018 ------------------------------------------------------------------------

FUNCTIONS = (
    "SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition"
    " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
    " AND (p.proname LIKE 'wallet\\_v1\\_%' OR p.proname = 'qwallet_uuid_v7')"
)
STORED = "SELECT mm_transaction_id, CAST(qw_transaction_id AS TEXT) FROM transactions ORDER BY 1"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request.param, tmp_path) as url:
        yield url


def functions(url: str) -> dict[str, str]:
    if url.startswith("sqlite"):
        return {}
    return {row[0]: row[1] for row in run(url, FUNCTIONS)[0]}


def as_released_at_0017(url: str) -> None:
    """What a database of revision 0017 had before this release: the functions of 0017 (a
    fresh upgrade to 0017 now installs the current ones, as every re-install does)."""
    if url.startswith("sqlite"):
        return
    run(
        url,
        *split_sql(read_sql("wallet_v1_before_0018.sql")),
        "DROP FUNCTION qwallet_uuid_v7(bigint)",
    )


async def _open(url: str) -> Any:
    if url.startswith("sqlite"):
        return SqliteStore(sqlite_path(url))
    return await PostgresStore.open(url, pool_min=1, pool_max=2)


async def _calls(url: str, mm: str, at: int, *, seed: bool = False) -> str:
    """Open ``mm`` at ``at`` and confirm it; replay ``m0`` (stored first); the new id."""
    store = await _open(url)
    try:
        if seed:
            await standard_world(store)
        opened = await store.begin(begin_call(Kind.WITHDRAWAL, mm, now_ms=at))
        await store.confirm(confirm_call(Kind.WITHDRAWAL, mm, now_ms=at))
        first = await store.begin(begin_call(Kind.WITHDRAWAL, "m0", now_ms=at))
        async with store.transaction() as tx:
            stored = await tx.fetchrow(
                "SELECT qw_transaction_id FROM transactions WHERE mm_transaction_id = 'm0'"
            )
        assert stored == {"qw_transaction_id": first.qw_transaction_id}
        return str(opened.qw_transaction_id)
    finally:
        await store.close()


def test_migration_0018_up_down_up_over_stored_rows(database: str) -> None:
    config = alembic_config(database)
    command.upgrade(config, "0017")
    as_released_at_0017(database)
    at_0017 = functions(database)
    postgres = not database.startswith("sqlite")
    assert "qwallet_uuid_v7(bigint)" not in at_0017
    at = NOW_MS
    v4 = asyncio.run(_calls(database, "m0", at, seed=True))
    if postgres:  # the functions of 0017 draw random ids
        assert uuid.UUID(v4).version == 4
    else:
        assert_v7(v4, at)  # SQLite's ids come from Python, whatever the revision
    stored = run(database, STORED)

    upgrade(database)
    at_head = functions(database)
    if postgres:
        assert set(at_head) == {*at_0017, "qwallet_uuid_v7(bigint)"}
        assert "gen_random_uuid" not in at_head[next(s for s in at_head if "begin" in s)]
    assert run(database, STORED) == stored  # no stored id changes
    v7 = asyncio.run(_calls(database, "m1", at + 5))
    assert_v7(v7, at + 5)
    stored = run(database, STORED)

    command.downgrade(config, "0017")
    # Byte for byte the functions of 0017, and the id function gone.
    assert functions(database) == at_0017
    assert run(database, STORED) == stored  # the version-7 id stays
    again = asyncio.run(_calls(database, "m2", at + 10))
    if postgres:
        assert uuid.UUID(again).version == 4

    upgrade(database)
    assert functions(database) == at_head
    assert_v7(asyncio.run(_calls(database, "m3", at + 15)), at + 15)
