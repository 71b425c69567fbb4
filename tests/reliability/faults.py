"""Database fault injectors: a TCP proxy that can cut, refuse or black-hole connections, and a
private PostgreSQL cluster that can be crashed (``pg_ctl -m immediate stop``) and restarted.

Both live on loopback only. The private cluster is this test's own (``initdb`` into a temporary
directory, its own port); the shared server other test runs use is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.reliability.harness import free_port

PG_BIN = Path(os.environ.get("QWALLET_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class TcpProxy:
    """Loopback TCP proxy in its own thread and event loop.

    - ``cut()`` aborts every open connection (both sides see a reset);
    - ``refuse(True)`` closes each new connection at once;
    - ``blackhole(True)`` accepts new connections and never answers (a dead network path).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.refusing = False
        self.blackholing = False
        self.cuts = 0
        self._transports: set[asyncio.Transport] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        ).result(10)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for transport in list(self._transports):
                transport.abort()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        async def abort_all() -> None:
            for transport in list(self._transports):
                transport.abort()
            self._transports.clear()

        asyncio.run_coroutine_threadsafe(abort_all(), self._loop).result(10)
        self.cuts += 1

    def refuse(self, on: bool) -> None:
        self.refusing = on

    def blackhole(self, on: bool) -> None:
        self.blackholing = on

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.transport
        if self.refusing:
            client.abort()
            return
        self._transports.add(client)  # type: ignore[arg-type]
        if self.blackholing:
            return  # keep it open, say nothing; cut() or stop() ends it
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client.abort()
            return
        self._transports.add(up_writer.transport)  # type: ignore[arg-type]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
            self._transports.discard(writer.transport)  # type: ignore[arg-type]


def _as_postgres(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def private_postgres_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the private PostgreSQL cluster needs root (to run initdb as the postgres user)"
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        return f"no initdb in {PG_BIN} or no runuser"
    return None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port, owned by this test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="qwallet-pg-"))
        shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self.crashes = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            " -c max_connections=60 -c shared_buffers=32MB"
        )
        _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.directory / "postgres.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def crash(self) -> None:
        """Immediate shutdown: no checkpoint, open connections dropped — recovery on start."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        self.crashes += 1

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop",
                check=False,
            )  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import asyncpg

        async def create() -> None:
            connection = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        return self.url(name)
