"""A database machine that vanishes without a reset (power lost, a network partition) is found
out in seconds by the store's TCP keepalives and ``TCP_USER_TIMEOUT``, busy or idle.

On loopback a killed server's kernel resets every connection, so the failover suite cannot show
this. Here a private PostgreSQL cluster runs in a private network namespace (its own loopback
and its own firewall, created and deleted by this test), and every packet of its port is
dropped: the peer stays silent, exactly as a machine gone from the network.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwallet.store import postgres
from tests.conftest import skip_or_fail
from tests.reliability.faults import private_postgres_unavailable

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

REPOSITORY = Path(__file__).resolve().parents[2]
# The kernel gives up TCP_USER_TIMEOUT after the first unacknowledged byte, rounded up to its
# next retransmission: a little over 5 s. The statement bound (10 s) would answer later.
BUSY_BOUND_S = postgres.TCP_USER_TIMEOUT_MS / 1000 + 2.5
# Idle: the first probe after TCP_KEEPIDLE, then TCP_USER_TIMEOUT of unanswered probes.
IDLE_BOUND_S = postgres.TCP_KEEPALIVE_IDLE_S + postgres.TCP_USER_TIMEOUT_MS / 1000 + 3


def _unavailable() -> str | None:
    reason = private_postgres_unavailable()
    if reason:
        return reason
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian's iproute2, iptables)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[str]:
    reason = _unavailable()
    if reason:
        skip_or_fail(reason)
    name = f"qwallet-{secrets.token_hex(4)}"
    _ip("netns", "add", name)
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        # What the probe started there (its PostgreSQL), should it have been stopped midway.
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30
        ).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name)


def test_a_silent_database_machine_is_found_out_busy_or_idle(namespace: str) -> None:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "tests.reliability.dead_peer_probe",
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # Without the options the statement is still waiting (the kernel retransmits for minutes).
    assert found["controlHung"] is True, found
    # A statement sent to the silent machine fails on the kernel's bound, before the 10 s
    # statement bound, as a lost connection (which expires the pool: the failover path).
    assert found["busyError"] in ("ConnectionDoesNotExistError", "ConnectionResetError",
                                  "TimeoutError", "OSError"), found  # fmt: skip
    assert postgres.TCP_USER_TIMEOUT_MS / 1000 - 0.5 <= found["busyS"] < BUSY_BOUND_S, found
    # An idle pooled connection is closed by its keepalive probes without being used.
    assert found["idleS"] < IDLE_BOUND_S, found
