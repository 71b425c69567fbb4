"""An interrupted ``qwallet bench`` stops the servers it started and drops its database.

SIGTERM is sent once the server is up (the same path as Ctrl-C, which raises the same
``KeyboardInterrupt``). Needs the ``bench`` extra and the PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from qwallet.store.postgres import asyncpg_dsn
from tests.conftest import PG_URL, postgres_unavailable_reason, skip_or_fail

pytest.importorskip("hdrh", reason="the bench extra is not installed (pip install -e '.[bench]')")
psutil = pytest.importorskip(
    "psutil", reason="the bench extra is not installed (pip install -e '.[bench]')"
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def _bench_databases() -> set[str]:
    connection = await asyncpg.connect(asyncpg_dsn(PG_URL), timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'qwallet_bench_%'"
        )
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def test_sigterm_stops_the_servers_and_drops_the_database(tmp_path: Path) -> None:
    reason = postgres_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    before = asyncio.run(_bench_databases())
    env = dict(os.environ, QWALLET_BENCH_PG_URL=PG_URL)
    argv = [sys.executable, "-c", "from qwallet.cli import main; main()", "bench", "--short"]
    argv += ["--players", "200", "--workers", "1", "--scenarios", "balance", "--no-reference"]
    argv += ["--output", str(tmp_path / "benchmarks.md")]
    bench = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen: dict[int, psutil.Process] = {}
        created: set[str] = set()
        deadline = time.monotonic() + 90
        # Wait until a server is up (a `serve` process exists) and the database exists.
        while time.monotonic() < deadline and bench.poll() is None:
            for child in _descendants(bench.pid):
                seen.setdefault(child.pid, child)
            created = asyncio.run(_bench_databases()) - before
            serving = any("serve" in " ".join(_cmdline(p)) for p in seen.values())
            if created and serving:
                break
            time.sleep(0.3)
        assert bench.poll() is None, "the benchmark ended before it could be interrupted"
        assert created, "no bench database was created"
        time.sleep(1.0)
        for child in _descendants(bench.pid):
            seen.setdefault(child.pid, child)
        bench.send_signal(signal.SIGTERM)
        _, stderr = bench.communicate(timeout=60)
        assert bench.returncode == 130, stderr[-2000:]
        alive = _still_running(seen.values(), grace_s=5.0)
        assert alive == [], f"processes left running: {alive}"
        assert not (created & asyncio.run(_bench_databases())), "the bench database was kept"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return list(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _still_running(candidates: object, grace_s: float) -> list[str]:
    """The processes still alive after ``grace_s`` (helpers such as multiprocessing's resource
    tracker exit on their own shortly after their parent)."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = []
        for process in candidates:  # type: ignore[attr-defined]
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{process.pid} {' '.join(_cmdline(process))[:200]}")
            except psutil.NoSuchProcess:
                continue
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)
