"""PostgreSQL faults under load: connections cut, connections refused, a black-holed network path,
and a crash-restart of a private PostgreSQL cluster.

While the database is gone the service must answer errors (HTTP 500 / code 100, ``/readyz`` 503)
and not hang past its timeouts; when it is back the service must recover by itself within
seconds; and nothing that committed may be reported as failed for good: the caller's retry of the
same call finds it as a replay (checked by the history checker over every acknowledged answer).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from qwallet.store import migrate
from tests.conftest import fresh_database_url, require_postgres, skip_or_fail
from tests.reliability.faults import PrivatePostgres, TcpProxy, private_postgres_unavailable
from tests.reliability.harness import (
    CENTS,
    Caller,
    CallerStats,
    Flow,
    ServerProcess,
    World,
    check_history,
    provision,
    record_result,
    run_flow,
    scale,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

OUTAGES = scale(3, 20)
CRASHES = scale(2, 10)
RECOVERY_BOUND_S = 10.0
# The adapter's statement timeout is 10 s; a request may also wait for a pool connection.
LATENCY_BOUND_S = 25.0
CONCURRENCY = 8


@pytest.fixture
def shared_pg_url(tmp_path: Path) -> Iterator[str]:
    require_postgres()
    yield from fresh_database_url("postgres", tmp_path)


def _via_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@dataclass
class Outage:
    kind: str
    wallet_statuses: list[tuple[int | None, int | None]] = field(default_factory=list)
    readyz: list[int | None] = field(default_factory=list)
    recovery_s: float | None = None


async def _probe(client: httpx.AsyncClient, world: World, outage: Outage) -> None:
    token = world.players[0].token
    try:
        response = await client.post(
            "/wallet/getBalance", json={"token": token}, timeout=LATENCY_BOUND_S
        )
        outage.wallet_statuses.append((response.status_code, response.json().get("errorCode")))
    except httpx.TransportError:
        outage.wallet_statuses.append((None, None))
    try:
        ready = await client.get("/readyz", timeout=LATENCY_BOUND_S)
        outage.readyz.append(ready.status_code)
    except httpx.TransportError:
        outage.readyz.append(None)


async def _time_to_recover(client: httpx.AsyncClient, world: World) -> float:
    started = time.monotonic()
    token = world.players[0].token
    while time.monotonic() - started < 60:
        try:
            ready = await client.get("/readyz", timeout=5)
            answer = await client.post("/wallet/getBalance", json={"token": token}, timeout=5)
            ok = ready.status_code == 200 and answer.status_code == 200
            if ok and "errorCode" not in answer.json():
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    return float("inf")


async def _load_with_faults(
    server: ServerProcess,
    world: World,
    inject: Callable[[httpx.AsyncClient], Awaitable[None]],
    rng: random.Random,
) -> tuple[list[Flow], CallerStats]:
    flows: list[Flow] = []
    stats = CallerStats()
    done = asyncio.Event()
    counter = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal counter
        caller = Caller(client, stats, call_deadline_s=120)
        while not done.is_set():
            counter += 1
            flow = Flow(
                rng.choice(world.players),
                rng.choice(["withdrawal", "withdrawal", "deposit"]),
                f"dbfault-{counter}-{secrets.token_hex(4)}",
                rng.randint(1, 300),
            )
            flows.append(flow)
            await run_flow(caller, flow, rng)

    async with (
        httpx.AsyncClient(
            base_url=server.url,
            auth=(world.username, world.password),
            timeout=httpx.Timeout(LATENCY_BOUND_S + 5, connect=2.0),
        ) as client,
        httpx.AsyncClient(base_url=server.url, auth=(world.username, world.password)) as probe,
    ):
        workers = [asyncio.create_task(worker(client)) for _ in range(CONCURRENCY)]
        try:
            await asyncio.sleep(1.0)  # load first
            await inject(probe)
            await asyncio.sleep(1.0)  # load after the last fault
        finally:
            done.set()
            await asyncio.gather(*workers)
    return flows, stats


def _assert_outages(outages: list[Outage]) -> None:
    for outage in outages:
        assert outage.recovery_s is not None and outage.recovery_s <= RECOVERY_BOUND_S, outage
        # While the database was gone: errors, never a success invented without it.
        for status, code in outage.wallet_statuses:
            assert status in (None, 500) and code in (None, 100), outage
        assert 503 in outage.readyz, outage


def test_postgres_connections_cut_and_refused_under_load(
    shared_pg_url: str, tmp_path: Path
) -> None:
    rng = random.Random()
    world = provision(shared_pg_url, player_count=6, balance_minor=500 * CENTS)
    target_port = urlsplit(shared_pg_url).port or 5432
    proxy = TcpProxy(target_port)
    proxy.start()
    server = ServerProcess(_via_port(shared_pg_url, proxy.port), tmp_path / "server.log")
    outages: list[Outage] = []
    started = time.monotonic()

    async def inject(probe: httpx.AsyncClient) -> None:
        for index in range(OUTAGES):
            outage = Outage("cut + refuse" if index % 2 == 0 else "cut only")
            outages.append(outage)
            proxy.refuse(index % 2 == 0)
            proxy.cut()
            if index % 2 == 0:
                for _ in range(3):
                    await _probe(probe, world, outage)
                    await asyncio.sleep(0.3)
            proxy.refuse(False)
            outage.recovery_s = await _time_to_recover(probe, world)
            await asyncio.sleep(rng.uniform(0.5, 1.5))

    server.start()
    try:
        flows, stats = asyncio.run(_load_with_faults(server, world, inject, rng))
        assert server.alive(), server.tail()
    finally:
        server.stop()
        proxy.stop()
    verdict = check_history(shared_pg_url, world, flows)
    _check_retries_found_replays(flows, verdict)
    record_result(
        "PostgreSQL connections cut / refused",
        "postgres",
        operations=stats.attempts,
        faults=len(outages),
        failures=len(verdict.problems),
        invariant_checks=verdict.checks,
        holdsOpened=verdict.holds,
        holdsFinalizedByCallers=verdict.holds - verdict.holds_pending,
        holdsLeftPending=verdict.holds_pending,
        flows=len(flows),
        http500=stats.http_500,
        maxRecoveryS=round(max(o.recovery_s or 0 for o in outages), 2),
        maxLatencyS=round(stats.max_latency_s, 2),
        seconds=round(time.monotonic() - started, 1),
    )
    _assert_outages([o for o in outages if o.kind == "cut + refuse"])
    assert all((o.recovery_s or 99) <= RECOVERY_BOUND_S for o in outages), outages
    assert stats.max_latency_s <= LATENCY_BOUND_S, stats.max_latency_s
    assert not verdict.problems, "\n".join(verdict.problems)


def test_postgres_black_holed_network_does_not_hang_requests(
    shared_pg_url: str, tmp_path: Path
) -> None:
    """New connections are accepted by the network and never answered (a dead route)."""
    world = provision(shared_pg_url, player_count=1, balance_minor=100 * CENTS)
    proxy = TcpProxy(urlsplit(shared_pg_url).port or 5432)
    proxy.start()
    server = ServerProcess(_via_port(shared_pg_url, proxy.port), tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, auth=(world.username, world.password)) as client:
            proxy.blackhole(True)
            proxy.cut()
            started = time.monotonic()
            try:
                answer = client.post(
                    "/wallet/getBalance", json={"token": world.players[0].token}, timeout=90
                )
                status: int | None = answer.status_code
            except httpx.TransportError:
                status = None
            elapsed = time.monotonic() - started
            proxy.blackhole(False)
            proxy.cut()
            recovery = asyncio.run(_recover_sync(server, world))
    finally:
        server.stop()
        proxy.stop()
    record_result(
        "PostgreSQL network black-holed",
        "postgres",
        operations=1,
        faults=1,
        failures=int(elapsed > LATENCY_BOUND_S or status != 500),
        invariant_checks=2,
        answeredAfterS=round(elapsed, 1),
        recoveryS=round(recovery, 2),
    )
    assert status == 500, status
    assert elapsed <= LATENCY_BOUND_S, f"request hung for {elapsed:.1f} s"
    assert recovery <= RECOVERY_BOUND_S


async def _recover_sync(server: ServerProcess, world: World) -> float:
    async with httpx.AsyncClient(
        base_url=server.url, auth=(world.username, world.password)
    ) as client:
        return await _time_to_recover(client, world)


def _check_retries_found_replays(flows: list[Flow], verdict: object) -> None:
    from tests.reliability.harness import Verdict

    assert isinstance(verdict, Verdict)
    for flow in flows:
        # A begin retried after a 500 or a transport error must end in an answer, a replay or
        # the give-up path — never in a refusal that says the call conflicts with itself.
        verdict.check(
            flow.begin_error in (None, -1, 121),
            f"{flow.mm_transaction_id}: begin answered {flow.begin_error} after retries",
        )


@pytest.fixture
def private_cluster() -> Iterator[PrivatePostgres]:
    reason = private_postgres_unavailable()
    if reason:
        skip_or_fail(reason)
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def test_postgres_crash_restart_under_load(
    private_cluster: PrivatePostgres, tmp_path: Path
) -> None:
    rng = random.Random()
    url = private_cluster.create_database("qwallet")
    migrate.upgrade(url)
    world = provision(url, player_count=6, balance_minor=500 * CENTS)
    server = ServerProcess(url, tmp_path / "server.log")
    outages: list[Outage] = []
    started = time.monotonic()

    async def inject(probe: httpx.AsyncClient) -> None:
        for _ in range(CRASHES):
            outage = Outage("immediate restart")
            outages.append(outage)
            await asyncio.to_thread(private_cluster.crash)
            for _ in range(3):
                await _probe(probe, world, outage)
                await asyncio.sleep(0.3)
            await asyncio.to_thread(private_cluster.start)
            outage.recovery_s = await _time_to_recover(probe, world)
            await asyncio.sleep(rng.uniform(0.5, 1.5))

    server.start()
    try:
        flows, stats = asyncio.run(_load_with_faults(server, world, inject, rng))
        assert server.alive(), server.tail()
    finally:
        server.stop()
    verdict = check_history(url, world, flows)
    _check_retries_found_replays(flows, verdict)
    record_result(
        "PostgreSQL crash (immediate stop) and restart",
        "postgres",
        operations=stats.attempts,
        faults=private_cluster.crashes,
        failures=len(verdict.problems),
        invariant_checks=verdict.checks,
        holdsOpened=verdict.holds,
        holdsFinalizedByCallers=verdict.holds - verdict.holds_pending,
        holdsLeftPending=verdict.holds_pending,
        flows=len(flows),
        http500=stats.http_500,
        maxRecoveryS=round(max(o.recovery_s or 0 for o in outages), 2),
        maxLatencyS=round(stats.max_latency_s, 2),
        seconds=round(time.monotonic() - started, 1),
    )
    _assert_outages(outages)
    assert stats.max_latency_s <= LATENCY_BOUND_S, stats.max_latency_s
    assert not verdict.problems, "\n".join(verdict.problems)
