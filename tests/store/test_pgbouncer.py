"""qwallet behind pgbouncer in transaction mode (Debian 12's pgbouncer 1.18, docs/scaling.md).

pgbouncer before 1.21 does not track prepared statements: in transaction mode consecutive
transactions of one client may run on different server connections, and a statement prepared on
one is unknown on the other. asyncpg prepares (and caches) every query, so the default fails there
and ``QWALLET_PG_STATEMENT_CACHE_SIZE=0`` is the documented setting. Both are shown here against a
real pgbouncer in front of the real PostgreSQL: the failure, deterministically, and a server
under concurrent load with the setting, checked by the history checker. PostgreSQL only: a
pooler of PostgreSQL connections has no SQLite counterpart.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.conftest import fresh_database_url, skip_or_fail
from tests.reliability.harness import (
    CENTS,
    Caller,
    CallerStats,
    Flow,
    ServerProcess,
    check_history,
    free_port,
    provision,
    run_flow,
)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass
class Bouncer:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def start_pgbouncer(database: str, *, pool_size: int) -> Bouncer:
    if not os.path.exists(PGBOUNCER):
        skip_or_fail("pgbouncer is not installed (Debian package pgbouncer)")
    port = free_port()
    # Not under pytest's tmp_path: as root, pgbouncer runs as the postgres user, who cannot
    # enter root's private temporary directories.
    directory = Path(tempfile.mkdtemp(prefix="qwallet-pgbouncer-"))
    (directory / "users.txt").write_text('"postgres" ""\n')
    log = directory / "pgbouncer.log"
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{database} = host=127.0.0.1 port=5432 dbname={database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\n"
        # qwallet sends client_min_messages=warning at start-up (docs/high-availability.md);
        # pgbouncer refuses start-up parameters it does not know unless told to ignore them.
        "ignore_startup_parameters = client_min_messages\n"
        f"logfile = {log}\n"
    )
    os.chmod(directory, 0o777)
    for name in ("users.txt", "pgbouncer.ini"):
        os.chmod(directory / name, 0o644)
    # pgbouncer refuses to run as root; -u switches to the postgres user after start.
    user = ["-u", "postgres"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [PGBOUNCER, *user, str(directory / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while "listening on" not in (log.read_text() if log.exists() else ""):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=10)
            text = log.read_text()[-2000:] if log.exists() else "(no log)"
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"pgbouncer did not start: {text}")
        time.sleep(0.05)
    return Bouncer(port, process, directory)


def stop(bouncer: Bouncer) -> None:
    if bouncer.process.poll() is None:
        bouncer.process.send_signal(signal.SIGTERM)
        try:
            bouncer.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bouncer.process.kill()
            bouncer.process.wait(timeout=10)
    shutil.rmtree(bouncer.directory, ignore_errors=True)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A fresh migrated PostgreSQL database: (direct URL, database name)."""
    for url in fresh_database_url("postgres", tmp_path):
        yield url, urlsplit(url).path.lstrip("/")


def test_the_default_statement_cache_fails_behind_pgbouncer_1_18(
    database: tuple[str, str],
) -> None:
    _, name = database
    bouncer = start_pgbouncer(name, pool_size=2)

    async def scenario(cache_size: int) -> str:
        a = await asyncpg.connect(bouncer.url(name), statement_cache_size=cache_size)
        b = await asyncpg.connect(bouncer.url(name), statement_cache_size=cache_size)
        try:
            await a.fetchval("SELECT $1::int + 1", 1)  # prepared on server connection 1
            async with b.transaction():  # b now holds connection 1 (pgbouncer reuses it first)
                await b.execute("SELECT 1")
                try:
                    await a.fetchval("SELECT $1::int + 1", 2)  # runs on server connection 2
                except asyncpg.PostgresError as error:
                    return type(error).__name__
            return "answered"
        finally:
            await a.close()
            await b.close()

    try:
        assert asyncio.run(scenario(256)) == "InvalidSQLStatementNameError"  # "does not exist"
        assert asyncio.run(scenario(0)) == "answered"
    finally:
        stop(bouncer)


def test_a_server_behind_pgbouncer_with_the_cache_off_loses_nothing(
    database: tuple[str, str], tmp_path: Path
) -> None:
    direct_url, name = database
    world = provision(direct_url, player_count=4, balance_minor=1_000 * CENTS)
    # Fewer server connections than the qwallet pool has clients: transactions of one client
    # connection really do move between server connections.
    bouncer = start_pgbouncer(name, pool_size=3)
    server = ServerProcess(
        bouncer.url(name),
        tmp_path / "server.log",
        env={"QWALLET_PG_STATEMENT_CACHE_SIZE": "0", "QWALLET_PG_POOL_MIN": "6"},
    )
    rng = random.Random()
    flows: list[Flow] = []
    stats = CallerStats()

    async def drive() -> None:
        async with httpx.AsyncClient(
            base_url=server.url, auth=(world.username, world.password), timeout=15.0
        ) as client:
            caller = Caller(client, stats, call_deadline_s=30.0)

            async def partner(worker: int) -> None:
                for n in range(40):
                    flow = Flow(
                        rng.choice(world.players),
                        rng.choice(["withdrawal", "deposit"]),
                        f"bouncer-{worker}-{n}",
                        rng.randint(1, 5 * CENTS),
                    )
                    flows.append(flow)
                    await run_flow(caller, flow, rng, rollback_on_first_failure=0.0)

            await asyncio.gather(*(partner(worker) for worker in range(6)))

    try:
        server.start()
        asyncio.run(drive())
    finally:
        server.stop()
        stop(bouncer)
    assert stats.http_500 == 0 and stats.transport_errors == 0, (stats, server.tail())
    assert all(flow.begin_error is None for flow in flows), [f.begin_error for f in flows]
    verdict = check_history(direct_url, world, flows)
    assert not verdict.problems, verdict.problems
