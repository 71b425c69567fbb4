"""Helpers of the kit's tests: a kit on the in-memory platform, a loopback server, and the rule
for a missing PostgreSQL server. Imported by name (``from kit_support import ...``): pytest puts
this folder on ``sys.path``."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from qwallet_partner import (
    FakeClock,
    InMemoryWallet,
    KitStore,
    PartnerKit,
    PostgresStore,
    RetrySchedule,
    SQLiteStore,
    WalletClient,
)


def make_kit(
    wallet: InMemoryWallet,
    db_path: Path,
    clock: FakeClock,
    schedule: RetrySchedule | None = None,
) -> PartnerKit:
    client = WalletClient("http://platform.test", "partner", "secret", transport=wallet.transport)
    return PartnerKit(client, SQLiteStore(db_path), clock=clock, schedule=schedule)


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def skip_or_fail(reason: str) -> None:
    """Skip a test whose server is missing, except in CI (``CI`` set): there the PostgreSQL half
    is part of what CI proves, so a missing server fails the run instead of thinning it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run this half: it does not skip it)")
    pytest.skip(reason)


# -- the two stores (SQLite, and PostgreSQL at QWALLET_TEST_PG_URL) -------------------------

PG_URL = os.environ.get("QWALLET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KIT_TABLES = "kit_outbox_attempts, kit_outbox, kit_payments, kit_transactions"

StoreFactory = Callable[[], KitStore]


async def _pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _pg_unavailable() -> str | None:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except Exception as error:
        return f"PostgreSQL at {PG_URL} is not reachable: {error!r}"
    return None


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def kit_backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite; for PostgreSQL the URL of a database made for this module."""
    if request.param == "sqlite":
        yield None
        return
    reason = _pg_unavailable()
    if reason:
        skip_or_fail(reason)
    name = f"qwallet_kit_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_URL.rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def new_store(kit_backend: str | None, tmp_path: Path) -> StoreFactory:
    """Factory: each call opens another store on the same (emptied) database, like a process."""
    if kit_backend is None:
        return lambda: SQLiteStore(tmp_path / "kit.db")
    url = kit_backend

    async def empty() -> None:
        store = PostgresStore(url)
        await store.open()  # creates the tables on first use
        await store.close()
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            await connection.execute(f"TRUNCATE {KIT_TABLES} RESTART IDENTITY CASCADE")
        finally:
            await connection.close()

    asyncio.run(empty())
    return lambda: PostgresStore(url)
