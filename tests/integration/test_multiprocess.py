"""Two ``qwallet serve`` processes on one database, with requests spread over both.

Each process has its own connections (on SQLite its own writer, serialized with the other by
``BEGIN IMMEDIATE`` and ``busy_timeout``), so only the database can keep the answers right: the
same scenarios as ``test_concurrency`` must hold when the racing requests land on different
processes. The processes use the real clock; the sessions seeded here (with the fixtures' manual
clock, which starts at real time and is not moved) stay live for the length of the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import UNLIMITED_ENV, Platform, free_port
from tests.integration import _helpers_concurrency as scenarios

PROCESSES = 2
START_TIMEOUT_S = 30.0


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready after {START_TIMEOUT_S} s: {log.read_text()}")


@pytest.fixture(scope="module")
def server_urls(
    database_url: str, platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Start the processes on the module's database; stop exactly those processes afterwards."""
    executable = Path(sys.executable).parent / "qwallet"
    env = {**os.environ, **UNLIMITED_ENV, "QWALLET_DATABASE_URL": database_url}
    logs = tmp_path_factory.mktemp("serve-logs")
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for number in range(PROCESSES):
            port = free_port()
            log = logs / f"serve-{number}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [
                        str(executable),
                        "serve",
                        "--no-demo",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            started.append((process, f"http://127.0.0.1:{port}", log))
        for process, url, log in started:
            _wait_ready(url, process, log)
        yield [url for _, url, _ in started]
    finally:
        for process, _, _ in started:
            if process.poll() is None:
                process.terminate()
        for process, _, _ in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_oversubscription_across_processes(server_urls: list[str], platform: Platform) -> None:
    scenarios.oversubscribed_withdrawals(platform, server_urls, k=37, n=100)


def test_deposit_ceiling_across_processes(server_urls: list[str], platform: Platform) -> None:
    scenarios.deposits_at_the_ceiling(platform, server_urls, k=10, n=60)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_duplicate_storm_across_processes(
    server_urls: list[str], platform: Platform, kind: str
) -> None:
    scenarios.duplicate_storm(platform, server_urls, kind, n=20)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_confirm_racing_rollback_across_processes(
    server_urls: list[str], platform: Platform, kind: str
) -> None:
    scenarios.confirm_rollback_race(platform, server_urls, kind, rounds=50)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_original_racing_its_rollback_across_processes(
    server_urls: list[str], platform: Platform, kind: str
) -> None:
    scenarios.original_racing_rollback(platform, server_urls, kind, rounds=50)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_one_id_from_two_players_across_processes(
    server_urls: list[str], platform: Platform, kind: str
) -> None:
    scenarios.one_id_two_players(platform, server_urls, kind, n=20)
