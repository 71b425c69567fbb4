"""The PostgreSQL adapter's connection handling for clusters (docs/high-availability.md).

- a multi-host URL with ``target_session_attrs`` connects past a host that refuses, for the
  store and for the migrations, and past a host that accepts the connection and never answers
  (where asyncpg alone spends its whole connect timeout on the first host), for the store and
  for ``qwallet db upgrade`` on an empty database;
- the statement timeout closes the connection instead of sending a cancel request: the server
  finishes the statement (and would finish a commit wait) on its own;
- a call whose pool has no free connection answers at the acquire bound (``PoolTimeoutError``,
  100 / HTTP 500 through the API) instead of waiting until a busy connection comes free;
- a WARNING sent with a statement — what PostgreSQL sends when a wait for the synchronous
  standby is cancelled — turns the call into an error, never a success.

The failover suite (tests/reliability/test_failover.py) proves the same on a Patroni cluster.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from qwallet.store import migrate
from qwallet.store.postgres import (
    HOST_CONNECT_TIMEOUT_S,
    CommitNotDurableError,
    PoolTimeoutError,
    PostgresStore,
    host_list,
)
from qwallet.store.sql import StatementTimeoutError
from tests.conftest import _pg_admin, _pg_url_for, fresh_database_url, require_postgres
from tests.reliability.harness import free_port

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url("postgres", tmp_path)


def _multi_host(url: str, first_port: int | None = None) -> str:
    """The same database behind a host list whose first entry refuses connections (or is
    ``first_port``)."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    hosts = f"127.0.0.1:{first_port or free_port()},{host}"
    netloc = f"{user}@{hosts}" if user else hosts
    return urlunsplit(parts._replace(netloc=netloc, query="target_session_attrs=read-write"))


def test_multi_host_url_finds_the_server_that_accepts_writes(pg_url: str) -> None:
    url = _multi_host(pg_url)
    migrate.upgrade(url)  # already at head: proves Alembic connects through the host list

    async def scenario() -> None:
        store = await PostgresStore.open(url, pool_min=1, pool_max=2)
        try:
            await store.ping()
            async with store.transaction() as tx:
                row = await tx.fetchrow("SELECT version_num FROM alembic_version")
            assert row is not None
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_host_that_never_answers_does_not_hide_the_hosts_after_it(pg_url: str) -> None:
    """A listening socket nobody reads (a frozen machine: the kernel completes the handshake)
    first in the list: asyncpg alone times out on it; the store reaches the next host."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = _multi_host(pg_url, silent.getsockname()[1])

    async def scenario() -> float:
        with pytest.raises(TimeoutError):
            await asyncpg.connect(url, timeout=HOST_CONNECT_TIMEOUT_S + 1)
        started = time.monotonic()
        store = await PostgresStore.open(url, pool_min=1, pool_max=2)
        try:
            await store.ping()
            async with store.transaction() as tx:
                assert await tx.fetchrow("SELECT 1 AS one") == {"one": 1}
        finally:
            await store.close()
        return time.monotonic() - started

    try:
        took = asyncio.run(scenario())
    finally:
        silent.close()
    # One wait on the silent host for the pool's first connection; the host that accepted
    # is tried first from then on.
    assert took < HOST_CONNECT_TIMEOUT_S + 2, took


def test_db_upgrade_connects_past_a_host_that_never_answers(tmp_path: Path) -> None:
    """``qwallet db upgrade`` with a multi-host URL whose first host is a listening socket
    nobody reads: it migrates an empty database through the next host, in about one host
    timeout (asyncpg's own multi-host connect, which it used before, timed out on the first
    host and tried no other)."""
    require_postgres()
    name = f"qwallet_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = _multi_host(_pg_url_for(name), silent.getsockname()[1])
    try:
        started = time.monotonic()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("qwallet")), "db", "upgrade"],
            env={**os.environ, "QWALLET_DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        assert "database is up to date" in done.stdout

        async def version() -> str | None:
            connection = await asyncpg.connect(_pg_url_for(name), timeout=10)
            try:
                return await connection.fetchval("SELECT version_num FROM alembic_version")
            finally:
                await connection.close()

        assert asyncio.run(version()), "the empty database was not migrated"
        print(f"qwallet db upgrade past a silent host: {took:.1f} s")
    finally:
        silent.close()
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_host_list_reads_every_host_of_the_authority() -> None:
    assert host_list("postgresql://u:p@h1:5433,h2,[::1]:5434/db?x=1") == [
        ("h1", 5433),
        ("h2", None),
        ("::1", 5434),
    ]
    assert host_list("postgresql://db.example:5432/qwallet") == [("db.example", 5432)]
    assert host_list("postgresql:///qwallet?host=/run/postgresql") == []


def test_timeout_closes_the_connection_and_never_cancels_the_statement(pg_url: str) -> None:
    async def scenario() -> None:
        store = await PostgresStore.open(pg_url, pool_min=1, pool_max=2, command_timeout_s=0.3)
        try:
            async with store.transaction() as tx:
                await tx.execute("CREATE TABLE timeout_probe (x integer)")
            started = time.monotonic()
            with pytest.raises(StatementTimeoutError):
                await store._call("INSERT INTO timeout_probe SELECT 1 FROM pg_sleep(1.0)")
            assert time.monotonic() - started < 0.9  # the caller was answered at the timeout
            await asyncio.sleep(1.5)
            # A cancel request would have aborted the insert; a closed connection lets the
            # server finish it (as it lets a commit finish waiting for the standby).
            async with store.transaction() as tx:
                rows = await tx.fetch("SELECT x FROM timeout_probe")
            assert rows == [{"x": 1}]
            await store.ping()  # the pool replaced the closed connection
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_transaction_past_the_bound_raises_statement_timeout_and_keeps_nothing(
    pg_url: str,
) -> None:
    """Inside ``transaction()`` the closed connection has already gone back to the pool when
    the error arrives; the caller must still see ``StatementTimeoutError`` (which the
    reconciliation retries smaller), not an error about the released connection."""

    async def scenario() -> None:
        store = await PostgresStore.open(pg_url, pool_min=1, pool_max=2, command_timeout_s=0.3)
        try:
            async with store.transaction() as tx:
                await tx.execute("CREATE TABLE bound_probe (x integer)")
            with pytest.raises(StatementTimeoutError):
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO bound_probe VALUES (1)")
                    await tx.execute("SELECT pg_sleep(1.0)")
            async with store.transaction() as tx:
                rows = await tx.fetch("SELECT x FROM bound_probe")
            assert rows == []  # the server rolled the unfinished transaction back
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_call_waits_for_a_pooled_connection_only_up_to_the_acquire_bound(pg_url: str) -> None:
    """The pool's only connection is held (a transaction left open, as a statement waiting on
    its bound or a commit wait would hold it); another call must be answered at the acquire
    bound, not when the connection comes free — asyncpg's acquire() alone waits without limit.
    The held connection stays usable and nothing is expired: the pool was busy, not broken."""

    async def scenario() -> None:
        store = await PostgresStore.open(pg_url, pool_min=1, pool_max=1, acquire_timeout_s=0.5)
        release = asyncio.Event()
        try:
            holder_pid: list[int] = []
            held = asyncio.Event()

            async def hold(release: asyncio.Event) -> None:
                async with store.transaction() as tx:
                    row = await tx.fetchrow("SELECT pg_backend_pid() AS pid")
                    assert row is not None
                    holder_pid.append(row["pid"])
                    held.set()
                    await release.wait()

            holding = asyncio.create_task(hold(release))
            await held.wait()
            started = time.monotonic()
            with pytest.raises(PoolTimeoutError):
                # Bounded here too, so that without the store's bound the test fails, not hangs.
                await asyncio.wait_for(store._call("SELECT 1 AS one"), 3.0)
            waited = time.monotonic() - started
            assert 0.4 < waited < 1.5, waited
            release.set()
            await holding
            # The same connection (not expired) serves the next call.
            row = await store._call("SELECT pg_backend_pid() AS pid")
            assert row is not None and row["pid"] == holder_pid[0]
        finally:
            release.set()  # a failed check must not leave close() waiting for the holder
            await store.close()

    asyncio.run(scenario())


def test_a_warning_with_a_statement_is_an_error_not_a_success(pg_url: str) -> None:
    async def create_function() -> None:
        connection = await asyncpg.connect(pg_url)
        try:
            await connection.execute(
                "CREATE FUNCTION qwallet_warn_probe() RETURNS boolean LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE WARNING 'probe'; RETURN true; END $$"
            )
        finally:
            await connection.close()

    async def scenario() -> None:
        store = await PostgresStore.open(pg_url, pool_min=1, pool_max=1)
        try:
            with pytest.raises(CommitNotDurableError):
                await store._call("SELECT qwallet_warn_probe()")
            # The connection keeps working; a statement without a WARNING succeeds.
            row = await store._call("SELECT 1 AS one")
            assert row is not None and row["one"] == 1
            with pytest.raises(CommitNotDurableError):
                async with store.transaction() as tx:
                    await tx.fetchrow("SELECT qwallet_warn_probe()")
        finally:
            await store.close()

    asyncio.run(create_function())
    asyncio.run(scenario())
