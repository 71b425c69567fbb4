"""Fixtures for the store tests: every test runs on SQLite and on PostgreSQL.

Each test module gets one migrated database per backend (a temporary SQLite file; a fresh
``qwallet_test_<random>`` database on the server at ``QWALLET_TEST_PG_URL``, dropped afterwards),
and every test starts from empty tables. Tests are plain functions that drive their scenario
through ``backend.run`` (one ``asyncio.run`` with a store opened and closed inside it).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from qwallet.store.migrate import upgrade
from qwallet.store.postgres import PostgresStore
from qwallet.store.sqlite import SqliteStore, sqlite_path
from tests.conftest import skip_or_fail

T = TypeVar("T")

PG_URL = os.environ.get("QWALLET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Children first, so foreign keys never object.
TABLES = (
    "settlement_days",
    "settlement_days_done",
    "checkpoint_balances",
    "reconcile_checkpoints",
    "ledger_entries",
    "transactions",
    "transaction_keys",
    "sessions",
    "adjustments",
    "partner_credentials",
    "players",
    "partners",
    "operator_api_keys",
)

Store = SqliteStore | PostgresStore


@dataclass(frozen=True)
class Backend:
    name: str
    url: str

    async def open(self, *, pool_max: int = 25) -> Store:
        if self.name == "sqlite":
            return SqliteStore(sqlite_path(self.url))
        return await PostgresStore.open(self.url, pool_min=1, pool_max=pool_max)

    def run(self, scenario: Callable[[Any], Awaitable[T]], *, pool_max: int = 25) -> T:
        """Open a store on empty tables, run ``scenario(store)``, close the store."""

        async def main() -> T:
            store = await self.open(pool_max=pool_max)
            try:
                async with store.transaction() as tx:
                    for table in TABLES:
                        await tx.execute(f"DELETE FROM {table}")
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'wallet.db'}"
        upgrade(url)
        yield Backend("sqlite", url)
        return

    name = f"qwallet_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(PG_URL, f"CREATE DATABASE {name}"))
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        skip_or_fail(
            f"PostgreSQL tests skipped: cannot create a database at {PG_URL}"
            f" (set QWALLET_TEST_PG_URL): {error!r}"
        )
    try:
        url = _with_database(PG_URL, name)
        upgrade(url)
        yield Backend("postgres", url)
    finally:
        asyncio.run(_admin(PG_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
