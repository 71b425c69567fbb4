"""The resolver as it runs in production: inside ``serve``'s lifespan, and ``resolver run-once``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qwallet.clock import ManualClock
from qwallet.settings import Settings
from tests.conftest import LiveServer, Platform
from tests.integration.test_cli_and_operator_api import as_json, qwallet

from .conftest import Holds, past_window


@pytest.fixture(scope="module")
def clock(backend: str) -> ManualClock:
    """One clock per backend: the command below compares with the system clock."""
    return ManualClock(start_ms=time.time_ns() // 1_000_000)


def test_resolver_run_once_command(
    database_url: str, holds_: Holds, platform: Platform, tmp_path: Path
) -> None:
    """The command uses the system clock: a zero window makes every pending withdrawal due.

    First in the module, while the manual clock is still close to the system clock.
    """
    hold = holds_.make("rolled_back")
    other = holds_.make("pending")
    os.environ["QWALLET_HOLD_WINDOW_S"] = "0"
    try:
        result = as_json(qwallet(database_url, "resolver", "run-once", "--json"))
    finally:
        del os.environ["QWALLET_HOLD_WINDOW_S"]
    by_id: dict[str, Any] = {r["qwTransactionId"]: r for r in result["resolutions"]}
    assert by_id[hold.qw_id]["action"] == "rolled_back"
    assert by_id[hold.qw_id]["partnerStatus"] == "ROLLED_BACK"
    assert by_id[other.qw_id]["action"] == "retry_later"
    assert holds_.state(hold.qw_id) == "rolled_back"
    assert json.loads(qwallet(database_url, "reconcile", "--json").stdout)["ok"] is True


def test_operators_create_command(database_url: str) -> None:
    created = as_json(qwallet(database_url, "operators", "create", "carol", "--json"))
    assert created["username"] == "carol" and len(created["password"]) >= 24
    again = qwallet(database_url, "operators", "create", "carol", "--json", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    human = qwallet(database_url, "operators", "create", "dave").stdout
    assert "dave" in human and "shown once" in human


# Last in the module: its server keeps resolving in the background until the module ends.
@pytest.fixture(scope="module")
def worker_server(
    settings: Settings, clock: ManualClock, platform: Platform
) -> Iterator[LiveServer]:
    live = LiveServer(replace(settings, hold_resolver_interval_s=0.2), clock)
    live.start()
    yield live
    live.stop()


def test_worker_in_the_app_lifespan_resolves_overdue_holds(
    platform: Platform, settings: Settings, holds_: Holds, worker_server: LiveServer
) -> None:
    hold = holds_.make("confirmed")
    time.sleep(0.5)
    assert holds_.state(hold.qw_id) == "pending"  # not before the window
    past_window(platform, settings)
    deadline = time.monotonic() + 15
    while holds_.state(hold.qw_id) == "pending":
        assert time.monotonic() < deadline, "the worker did not resolve the hold"
        time.sleep(0.1)
    assert holds_.state(hold.qw_id) == "confirmed"
    (resolution,) = holds_.resolutions(hold.qw_id)
    assert resolution["actor"] == "resolver" and resolution["action"] == "confirmed"
    assert platform.reconcile().ok
    # Housekeeping of the same passes: a session expired past the hold window is pruned, one
    # expired more recently (a confirm may still name it) is kept.
    window_ms = settings.hold_window_s * 1000
    now_ms = platform.clock.now_ms()

    async def old_sessions() -> None:
        async with platform.store.transaction() as tx:
            for token, expires_at_ms in (("pruned", now_ms - window_ms - 1), ("kept", now_ms - 1)):
                await tx.execute(
                    "INSERT INTO sessions (token, player_id, partner_id, game_code,"
                    " created_at_ms, last_seen_at_ms, idle_timeout_ms, expires_at_ms)"
                    " SELECT $1, player_id, partner_id, game_code, created_at_ms,"
                    " last_seen_at_ms, idle_timeout_ms, $2 FROM sessions LIMIT 1",
                    token,
                    expires_at_ms,
                )

    platform.run(old_sessions())
    while holds_.fetch("SELECT token FROM sessions WHERE token = 'pruned'"):
        assert time.monotonic() < deadline + 15, "the worker did not prune the expired session"
        time.sleep(0.1)
    assert holds_.fetch("SELECT token FROM sessions WHERE token = 'kept'")
    metrics = worker_server_metrics(worker_server)
    assert 'qwallet_hold_resolutions_total{action="confirmed"}' in metrics


def worker_server_metrics(server: LiveServer) -> str:
    import httpx

    return httpx.get(f"{server.url}/metrics", timeout=10).text
