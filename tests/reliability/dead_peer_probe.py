"""Run inside a private network namespace (``test_dead_peer.py``): a private PostgreSQL cluster
on the namespace's own loopback, then every packet to and from its port dropped, as when its
machine vanishes from the network without a reset. Prints one JSON object:

- ``busyS`` / ``busyError``: a statement of ``PostgresStore`` sent after the drop, until it failed;
- ``idleS``: until an idle connection opened the way the store's pool opens them was closed by
  the kernel (keepalive probes unanswered), never used meanwhile;
- ``controlHung``: whether a plain asyncpg connection (neither option set) still waited at
  ``CONTROL_WAIT_S`` for the same statement, the behaviour without the options.

The namespace is this probe's own, so the firewall rules it adds touch nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time

import asyncpg

from qwallet.store import postgres
from qwallet.store.postgres import PostgresStore
from tests.reliability.faults import PrivatePostgres

CONTROL_WAIT_S = 9.0
IDLE_LIMIT_S = 25.0


def _drop(port: int) -> None:
    for direction in ("--dport", "--sport"):
        subprocess.run(
            ["iptables", "-A", "INPUT", "-p", "tcp", direction, str(port), "-j", "DROP"],
            check=True,
            timeout=30,
        )


async def _busy(store: PostgresStore) -> tuple[float, str]:
    started = time.monotonic()
    try:
        async with store.transaction() as tx:
            await tx.fetch("SELECT 1")
    except Exception as error:  # what failed is the finding
        return time.monotonic() - started, type(error).__name__
    return time.monotonic() - started, "none"


async def _idle(connection: asyncpg.Connection) -> float:
    started = time.monotonic()
    closed = asyncio.Event()
    connection.add_termination_listener(lambda _connection: closed.set())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(closed.wait(), IDLE_LIMIT_S)
    return time.monotonic() - started


async def _control(connection: asyncpg.Connection) -> bool:
    try:
        await asyncio.wait_for(connection.fetch("SELECT 1"), CONTROL_WAIT_S)
    except TimeoutError:
        return True
    except Exception:  # anything but a wait: it did not hang
        return False
    return False


async def probe(url: str, port: int) -> dict[str, object]:
    store = await PostgresStore.open(url, pool_min=1, pool_max=1)
    idle = await asyncpg.connect(url, connection_class=postgres._WatchedConnection)
    plain = await asyncpg.connect(url)
    try:
        async with store.transaction() as tx:
            assert await tx.fetch("SELECT 1") == [{"?column?": 1}]
        await plain.fetch("SELECT 1")
        _drop(port)
        (busy_s, busy_error), idle_s, control_hung = await asyncio.gather(
            _busy(store), _idle(idle), _control(plain)
        )
    finally:
        for connection in (idle, plain):
            connection.terminate()
        await asyncio.wait_for(store.close(), 30)
    return {
        "busyS": round(busy_s, 2),
        "busyError": busy_error,
        "idleS": round(idle_s, 2),
        "controlHung": control_hung,
    }


def main() -> None:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        url = cluster.create_database("deadpeer")
        print(json.dumps(asyncio.run(probe(url, cluster.port))), flush=True)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
