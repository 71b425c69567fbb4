"""A rolling restart under load: two ``qwallet serve`` processes on one database, each stopped
with SIGTERM and started again on its port in turn, while partners keep calling.

The client is what a load balancer in front of the two servers does, and no more: round-robin
over both, a new connection per request, and a retry on the other server only when a connection
is *refused* (the port is closed, so nothing was sent). Any other failure — a connection reset,
a request cut off, an HTTP 500, code 100 or 134 — is counted and fails the test: a server that
stops must answer every request it has read. Afterwards the history checker proves nothing
acknowledged was lost or applied twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwallet.payments import PaymentWorker, WalletProvider
from tests.conftest import Platform, fresh_database_url
from tests.reliability.harness import (
    CENTS,
    Caller,
    CallerStats,
    Flow,
    ServerProcess,
    World,
    check_history,
    provision,
    run_flow,
)
from tests.web.test_delivery import ok, order_state, paid_order

pytestmark = pytest.mark.reliability

CONCURRENCY = 6
DRAIN_TIMEOUT_S = 10
SETTLE_S = 1.5  # load on both servers before, between and after the restarts
# Short intervals, so that the hold resolver and the payment worker are running when SIGTERM
# arrives and their stop paths are part of every shutdown.
SERVER_ENV = {
    "QWALLET_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
    "QWALLET_HOLD_RESOLVER_INTERVAL_S": "0.2",
    "QWALLET_PAYMENT_WORKER_INTERVAL_S": "0.2",
}
SHUTDOWN_COMPLETE = "Application shutdown complete."
# uvicorn shuts down gracefully on SIGTERM, then raises the signal again so that the process
# ends "killed by SIGTERM", as a service manager expects of a process it asked to stop.
CLEAN_EXITS = (0, -signal.SIGTERM)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(str(request.param), tmp_path)


def _refused(error: BaseException) -> bool:
    """Whether the connect failed because nothing listens (ECONNREFUSED, somewhere in the
    chain of causes: httpx wraps the socket's error twice)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


class RoundRobin(httpx.AsyncBaseTransport):
    """Round-robin over the servers; a refused connection is retried on the next one."""

    def __init__(self, ports: list[int], *, give_up_s: float = 30.0) -> None:
        self.ports = ports
        self.give_up_s = give_up_s
        self.refused = 0
        self.failures: list[str] = []
        self._turn = 0
        # No keep-alive: each request is a connection of its own, as many balancers do towards
        # a backend being drained, so "refused" is the only error that proves nothing was sent.
        self._inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        deadline = time.monotonic() + self.give_up_s
        while True:
            port = self.ports[self._turn % len(self.ports)]
            self._turn += 1
            attempt = httpx.Request(
                request.method,
                request.url.copy_with(port=port),
                headers=request.headers,
                content=body,
                extensions=request.extensions,
            )
            try:
                return await self._inner.handle_async_request(attempt)
            except httpx.TransportError as error:
                if not _refused(error) or time.monotonic() > deadline:
                    self.failures.append(f"{port} at {time.monotonic():.3f}: {error!r}")
                    raise
                self.refused += 1
                await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        await self._inner.aclose()


def sigterm_and_wait(server: ServerProcess) -> tuple[int, float, bool]:
    """SIGTERM to the server's process group: (exit status, seconds until it exited, whether
    its lifespan shutdown — resolver, payment worker, pool — completed)."""
    assert server.process is not None
    before = server.log_path.read_text().count(SHUTDOWN_COMPLETE)
    started = time.monotonic()
    os.killpg(server.process.pid, signal.SIGTERM)
    returncode = server.process.wait(timeout=DRAIN_TIMEOUT_S + 20)
    seconds = time.monotonic() - started
    completed = server.log_path.read_text().count(SHUTDOWN_COMPLETE) == before + 1
    return returncode, seconds, completed


async def _drive(
    servers: list[ServerProcess], world: World, rng: random.Random
) -> tuple[list[Flow], CallerStats, RoundRobin, list[tuple[int, float, bool]]]:
    flows: list[Flow] = []
    stats = CallerStats()
    exits: list[tuple[int, float, bool]] = []
    done = asyncio.Event()
    transport = RoundRobin([server.port for server in servers])

    async def restarter() -> None:
        try:
            for server in servers:
                await asyncio.sleep(SETTLE_S)
                exits.append(await asyncio.to_thread(sigterm_and_wait, server))
                await asyncio.to_thread(server.start)
            await asyncio.sleep(SETTLE_S)
        finally:
            done.set()

    async def partner(client: httpx.AsyncClient) -> None:
        caller = Caller(client, stats, call_deadline_s=30.0)
        while not done.is_set():
            flow = Flow(
                rng.choice(world.players),
                rng.choice(["withdrawal", "deposit"]),
                f"rolling-{len(flows)}-{rng.getrandbits(32):08x}",
                rng.randint(1, 5 * CENTS),
            )
            flows.append(flow)
            await run_flow(caller, flow, rng, rollback_on_first_failure=0.0)

    async with httpx.AsyncClient(
        base_url=servers[0].url,
        auth=(world.username, world.password),
        timeout=httpx.Timeout(15.0, connect=2.0),
        transport=transport,
    ) as client:
        await asyncio.gather(restarter(), *(partner(client) for _ in range(CONCURRENCY)))
    return flows, stats, transport, exits


def test_rolling_restart_under_load_fails_no_request(fresh_url: str, tmp_path: Path) -> None:
    rng = random.Random()
    world = provision(fresh_url, player_count=4, balance_minor=10_000 * CENTS)
    servers = [
        ServerProcess(fresh_url, tmp_path / f"server-{n}.log", env=SERVER_ENV, log_level="info")
        for n in (1, 2)
    ]
    try:
        for server in servers:
            server.start()
        started = time.monotonic()
        flows, stats, transport, exits = asyncio.run(_drive(servers, world, rng))
        elapsed_s = time.monotonic() - started
        for server in servers:
            assert server.alive(), server.tail()
    finally:
        for server in servers:
            server.stop()
    logs = "\n".join(server.tail() for server in servers)
    # Each server exited by itself, cleanly, well within the drain timeout.
    assert len(exits) == len(servers)
    for returncode, seconds, completed in exits:
        assert returncode in CLEAN_EXITS and completed, (returncode, logs)
        assert seconds < DRAIN_TIMEOUT_S, (seconds, logs)
    # Not one request failed: only refused connections were retried (on the other server).
    assert stats.transport_errors == 0, (stats, transport.failures[:5], logs)
    assert stats.http_500 == 0 and stats.code_134 == 0 and stats.codes.get(100, 0) == 0, stats
    assert stats.attempts == stats.calls, stats  # no call needed a second attempt
    assert all(flow.begin_error is None for flow in flows), [f.begin_error for f in flows]
    assert len(flows) >= 50, f"only {len(flows)} flows in {elapsed_s:.1f} s"
    verdict = check_history(fresh_url, world, flows)
    assert not verdict.problems, verdict.problems
    assert elapsed_s < 60, elapsed_s
    print(
        f"[rolling restart] {len(flows)} flows, {stats.calls} calls, {transport.refused} refused"
        f" connections retried, exits {exits}, {elapsed_s:.1f} s"
    )


def test_stopping_the_payment_worker_records_the_callback_in_flight(platform: Platform) -> None:
    """A server stopping mid-callback: the attempt is finished and recorded, so the order's
    delivery lease is given back instead of blocking every other process until it ends."""
    order_id, _ = paid_order(platform)
    entered = asyncio.Event()

    async def slow_partner(request: httpx.Request) -> httpx.Response:
        entered.set()
        await asyncio.sleep(0.5)  # the callback is in flight when the server stops
        return ok(request)

    async def stop_mid_callback() -> None:
        delivery = PaymentWorker(
            platform.store,
            platform.clock,
            {"wallet": WalletProvider()},
            currencies=platform.settings.currency_registry,
            transport=httpx.MockTransport(slow_partner),
        )
        delivery.start()
        await asyncio.wait_for(entered.wait(), timeout=10)
        await delivery.stop()

    platform.run(stop_mid_callback())
    state = order_state(platform, order_id)
    assert state["attempts"] == [(1, "delivered")], state
    assert state["state"] == "delivered" and state["next_delivery_at_ms"] is None, state
