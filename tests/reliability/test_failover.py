"""PostgreSQL failover under load: a Patroni cluster loses its primary again and again while two
``qwallet serve`` processes take withdraw → confirm / rollback flows, and no acknowledged answer
is lost or applied twice.

The cluster (``patroni_cluster.py``): etcd and three Patroni-managed PostgreSQL 15 nodes on
loopback, ``synchronous_mode_strict``, ``use_pg_rewind``. Both servers connect with the
multi-host URL (``postgresql://h1,h2,h3/qwallet?target_session_attrs=read-write``) and are never
restarted. Callers behave as the partner documentation says: a withdraw that failed or got no
answer is rolled back (or retried), confirm and rollback are retried until acknowledged.

Faults, in random order at random moments (CI: each once; long: repeated up to 30 failovers):

- the primary's PostgreSQL SIGKILLed, backends and all (Patroni restarts it or fails over);
- the primary's Patroni SIGKILLed, PostgreSQL left running, orphaned. The cluster runs with
  ``watchdog: mode: required``, as docs/high-availability.md prescribes for production, on an
  *emulated* device (``watchdog_device.py``: a test cannot reset its own machine): when the
  keepalives stop, the emulated timer resets the node — its PostgreSQL SIGKILLed —
  ``ttl - safety_margin`` (3 s) after the last leader-key renewal, before the key expires.
  Patroni comes back as a service manager would restart it, once another node holds the leader
  key (sooner it would find its own key and simply lead on);
- ``patronictl switchover`` and ``patronictl failover`` to the synchronous standby;
- the synchronous standby's machine lost (Patroni and PostgreSQL SIGKILLed), restarted later;
- the primary's machine lost, restarted later: it rejoins as a replica through ``pg_rewind``;
- the cancel hazard, on purpose: both standbys frozen (SIGSTOP) so that commits wait for them,
  every backend waiting on ``SyncRep`` cancelled with ``pg_cancel_backend`` (PostgreSQL then
  reports success with a WARNING, the commit existing on the primary only), then the primary's
  machine lost and the standbys thawed, so a standby without those commits is promoted. No
  success answered while the standbys were frozen may exist (and the history check proves that
  nothing acknowledged was in the lost commits: a replay of one, had it answered without a
  commit of its own waiting for the standby, would be missing afterwards).

The hold resolver and the payment worker run in both servers with short intervals
(``failover_partners.py``): a partner abandons withdrawals whose fate its kit records before
each is sent, and the resolver asks the kit's real Query Withdrawal endpoint; a shop's orders are
paid from the wallet and delivered to the kit's real callback receiver. Afterwards every abandoned
hold is in the state its partner decided, with exactly one resolution that moved money; every
order is delivered, the studio's hook ran once per order, and no two callbacks for one order were
ever in flight at once.

Recovery time: from the fault — the moment the injector acts (the kill, the patronictl command,
the freeze), after its own look at the cluster — to the first successful withdraw through a
server; for the cancel hazard the primary is destroyed 2.5 s after the freeze (every reset by
the emulated watchdog is counted, and one outside a Patroni fault is reported as unplanned). Beside the load
a ``Timeline`` notes Patroni's leader and synchronous standby and writes directly on the primary,
so each recovery is split into the cluster's part (up to the first commit a synchronous standby
confirmed again) and the rest (qwallet's pool finding the new primary, the probe's next try).
Afterwards the history checker (every acknowledged answer present once in its announced state with its
balance, ledger replay, conservation, every hold finalized) and ``qwallet reconcile`` run on the
new primary through the same multi-host URL.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwallet.settings import Settings
from qwallet.store import migrate
from qwallet.store.factory import open_store
from tests.conftest import skip_or_fail
from tests.reliability.evidence import cluster_logs, keep_evidence, timeline_entries
from tests.reliability.failover_partners import (
    QUERY_PASSWORD,
    QUERY_USER,
    WORKER_ENV,
    Abandoned,
    abandon_holds,
    buy,
    check_workers,
    partner_servers,
    wait_settled,
)
from tests.reliability.harness import (
    CENTS,
    Ack,
    Caller,
    CallerStats,
    Flow,
    Player,
    ServerProcess,
    World,
    amount_minor,
    check_history,
    money_body,
    provision,
    record_result,
    run_flow,
    scale,
)
from tests.reliability.patroni_cluster import (
    LOOP_WAIT_S,
    RETRY_TIMEOUT_S,
    TTL_S,
    WATCHDOG_SAFETY_MARGIN_S,
    WATCHDOG_TIMEOUT_S,
    PatroniCluster,
    PatroniNode,
    Timeline,
    cluster_unavailable,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

KINDS = (
    "primary postgres SIGKILL",
    "primary patroni SIGKILL",
    "switchover",
    "failover",
    "sync standby lost",
    "primary machine lost",
    "cancel hazard + primary lost",
)
LONG_FAILOVERS = 30
CONCURRENCY = 8
RECOVERY_BOUND_S = 45.0
# docs/high-availability.md's target; a slower recovery keeps its logs (evidence.py).
RECOVERY_TARGET_S = TTL_S + 2 * LOOP_WAIT_S
MONEY_ENDPOINTS = {"withdraw", "confirmWithdrawal", "rollbackWithdrawal", "deposit"}
SERVER_ENV = {"QWALLET_PG_POOL_MIN": "2", "QWALLET_PG_POOL_MAX": "8", **WORKER_ENV}
SETTLE_BOUND_S = 90.0  # after the load: every abandoned hold resolved, every order delivered


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PatroniCluster]:
    reason = cluster_unavailable()
    if reason:
        skip_or_fail(reason)
    with PatroniCluster() as made:
        try:
            yield made
        finally:
            made.keep_logs(tmp_path / "cluster-logs")  # the cluster's directory goes with it


@dataclass
class Fault:
    kind: str
    leader_before: str
    leader_after: str = ""
    recovery_s: float | None = None
    readyz: list[int | None] = field(default_factory=list)
    # (sent after the fault s, answered after s, HTTP status, errorCode) of each probe
    trace: list[tuple[float, float, int | None, Any]] = field(default_factory=list)
    detail: str = ""
    # The fault's moment (monotonic): the kill, the patronictl command, the standbys frozen;
    # set by the injector right before it acts, after its own look at the cluster.
    started: float = 0.0
    kill_s: float | None = None  # cancel hazard: the primary destroyed, s after the freeze
    injected: threading.Event = field(default_factory=threading.Event)  # started is set
    split: dict[str, Any] = field(default_factory=dict)
    command_s: float | None = None  # how long patronictl ran (switchover, failover)
    watchdog_reset_s: float | None = None  # the emulated watchdog reset a node, after s


class TimedCaller(Caller):
    """A ``Caller`` that also notes when each money call was answered with success."""

    def __init__(self, *args: Any, successes: list[tuple[float, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.successes = successes

    async def once(self, endpoint: str, body: bytes) -> tuple[int | None, dict[str, Any] | None]:
        status, payload = await super().once(endpoint, body)
        answered = status == 200 and payload is not None and "errorCode" not in payload
        if answered and endpoint in MONEY_ENDPOINTS:
            self.successes.append((time.monotonic(), endpoint))
        return status, payload


class Freeze:
    """The window in which the standbys were frozen (monotonic times)."""

    def __init__(self) -> None:
        self.windows: list[tuple[float, float]] = []
        self.cancelled = 0


def _other_replicas(cluster: PatroniCluster, leader: PatroniNode) -> list[PatroniNode]:
    return [node for node in cluster.nodes if node is not leader]


def _cancel_sync_waiters(cluster: PatroniCluster, leader: PatroniNode) -> int:
    """pg_cancel_backend every qwallet backend waiting for the synchronous standby."""
    try:
        out = cluster.psql(
            leader,
            "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
            " WHERE wait_event = 'SyncRep' AND application_name = 'qwallet'",
        )
        return int(out or 0)
    except Exception:
        return 0


class Injector:
    """Runs the faults (blocking calls, in a thread) and measures each recovery."""

    def __init__(self, cluster: PatroniCluster, freeze: Freeze, rng: random.Random) -> None:
        self.cluster = cluster
        self.freeze = freeze
        self.rng = rng
        self.to_restart: list[tuple[float, PatroniNode]] = []
        # Nodes whose Patroni comes back as soon as another node leads (or at their due time).
        self.when_replaced: set[str] = set()

    def restart_due(self, force: bool = False) -> None:
        now = time.monotonic()
        leader = self.cluster.leader() if self.when_replaced else None
        for due, node in list(self.to_restart):
            replaced = node.name in self.when_replaced and leader not in (None, node)
            if force or now >= due or replaced:
                self.when_replaced.discard(node.name)
                node.start_if_stopped()  # the emulated watchdog's boot may have been first
                self.to_restart.remove((due, node))

    def inject(self, fault: Fault) -> None:
        cluster = self.cluster
        kind = fault.kind
        leader = cluster.node(fault.leader_before)
        # Patroni may be re-assigning the synchronous standby just now: wait for it.
        cluster.wait_for(lambda: cluster.sync_standby() is not None, 60, "synchronous standby")
        sync = cluster.sync_standby()
        fault.started = time.monotonic()  # recovery times count from here, not from the look
        fault.injected.set()
        if kind == "primary postgres SIGKILL":
            leader.kill_postgres()
        elif kind == "primary patroni SIGKILL":
            leader.kill_patroni()
            # The emulated watchdog resets the node WATCHDOG_TIMEOUT_S after Patroni's last
            # keepalive. A service manager restarts Patroni; here once another node holds the
            # leader key (a restart before the ttl would find its own key and lead on).
            self.when_replaced.add(leader.name)
            self.to_restart.append((time.monotonic() + TTL_S + 10, leader))
        elif kind in ("switchover", "failover"):
            assert sync is not None, cluster.describe()
            command_started = time.monotonic()
            done = cluster.switchover(sync) if kind == "switchover" else cluster.failover(sync)
            fault.command_s = round(time.monotonic() - command_started, 2)
            fault.detail = (done.stdout + done.stderr).strip()[-300:]
            assert done.returncode == 0, done.stdout + done.stderr
        elif kind == "sync standby lost":
            assert sync is not None, cluster.describe()
            sync.crash()
            self.to_restart.append((time.monotonic() + 3, sync))
        elif kind == "primary machine lost":
            leader.crash()
            self.to_restart.append((time.monotonic() + TTL_S + 3, leader))
        elif kind == "cancel hazard + primary lost":
            self._cancel_hazard(leader, fault)
        else:
            raise AssertionError(kind)

    def _cancel_hazard(self, leader: PatroniNode, fault: Fault) -> None:
        standbys = _other_replicas(self.cluster, leader)
        for node in standbys:
            node.freeze(True)
        frozen_at = time.monotonic()
        try:
            # Commits now wait for a standby that does not answer; cancel every such wait, and
            # those of the callers' retries (replays) as they arrive.
            deadline = frozen_at + 2.5
            while time.monotonic() < deadline:
                self.freeze.cancelled += _cancel_sync_waiters(self.cluster, leader)
                time.sleep(0.1)
            leader.crash()  # the commits that exist on the primary only die with it
            fault.kill_s = round(time.monotonic() - fault.started, 2)
        finally:
            thawed_at = time.monotonic()
            for node in standbys:
                node.freeze(False)
            self.freeze.windows.append((frozen_at, thawed_at))
        self.to_restart.append((time.monotonic() + TTL_S + 3, leader))


def _acknowledged(endpoint: str, payload: dict[str, Any]) -> Ack:
    return Ack(
        endpoint,
        str(payload["mmTransactionId"]),
        str(payload["qwTransactionId"]),
        amount_minor(payload["balance"]["amount"]),
        1,
    )


async def _finalize(caller: Caller, flow: Flow, succeeded: bool) -> None:
    """A probe withdrawal's second half, as the partner does it: roll back, retried until
    acknowledged (a failed withdraw too: its outcome is unknown)."""
    body = money_body(flow.player.token, flow.mm_transaction_id, None, rollbackReason="probe")
    status, payload, _ = await caller.call("rollbackWithdrawal", body)
    assert status == 200 and "errorCode" not in payload, payload
    flow.acks.append(_acknowledged("rollbackWithdrawal", payload))
    flow.final = "rolled_back"


async def _readyz(client: httpx.AsyncClient, fault: Fault) -> None:
    try:
        ready = await client.get("/readyz", timeout=5)
        fault.readyz.append(ready.status_code)
    except httpx.TransportError:
        fault.readyz.append(None)


async def _probe(
    clients: list[httpx.AsyncClient],
    caller_for: Callable[[httpx.AsyncClient], Caller],
    probe_player: Player,
    flows: list[Flow],
    fault: Fault,
    settled: asyncio.Event,
) -> None:
    """Fresh withdrawals through alternate servers, from the fault until the cluster is whole
    again and one succeeded after the last failure. The recovery time is when that success was
    answered, counted from the moment the injector acted."""
    await asyncio.to_thread(fault.injected.wait)
    started = fault.started or time.monotonic()
    index = 0
    finalizers: list[asyncio.Task[None]] = []
    recovered_at: float | None = None
    while time.monotonic() - started < RECOVERY_BOUND_S * 4:
        client = clients[index % len(clients)]
        index += 1
        caller = caller_for(client)
        flow = Flow(probe_player, "withdrawal", f"probe-{secrets.token_hex(6)}", 1)
        flows.append(flow)
        body = money_body(probe_player.token, flow.mm_transaction_id, 1)
        sent = time.monotonic()
        status, payload = await caller.once("withdraw", body)
        answered = time.monotonic() - started
        code = None if payload is None else payload.get("errorCode")
        fault.trace.append((round(sent - started, 2), round(answered, 2), status, code))
        ok = status == 200 and payload is not None and "errorCode" not in payload
        if ok:
            assert payload is not None
            flow.acks.append(_acknowledged("withdraw", payload))
            if recovered_at is None:
                recovered_at = answered
        else:
            flow.begin_error = -1
            recovered_at = None
            # Beside the probes, not before the next one: a /readyz that waits for a
            # connection must not delay the withdraw that may be the first to succeed.
            finalizers.append(asyncio.create_task(_readyz(client, fault)))
        finalizers.append(asyncio.create_task(_finalize(caller, flow, ok)))
        if settled.is_set() and recovered_at is not None:
            break
        await asyncio.sleep(0.1)
    fault.recovery_s = recovered_at
    await asyncio.gather(*finalizers)


def _run(
    cluster: PatroniCluster,
    servers: list[ServerProcess],
    world: World,
    kinds: list[str],
    rng: random.Random,
    beside: Callable[[asyncio.Event], list[Coroutine[Any, Any, None]]],
) -> tuple[list[Flow], CallerStats, list[Fault], Freeze, list[tuple[float, str]]]:
    flows: list[Flow] = []
    stats = CallerStats()
    faults: list[Fault] = []
    freeze = Freeze()
    successes: list[tuple[float, str]] = []
    injector = Injector(cluster, freeze, rng)
    load_players = world.players[1:]
    probe_player = world.players[0]

    async def main() -> None:
        done = asyncio.Event()
        counter = 0
        clients = [
            httpx.AsyncClient(
                base_url=server.url,
                auth=(world.username, world.password),
                timeout=httpx.Timeout(30, connect=2.0),
            )
            for server in servers
        ]

        def caller_for(client: httpx.AsyncClient) -> Caller:
            return TimedCaller(client, stats, call_deadline_s=180, successes=successes)

        async def worker(number: int) -> None:
            nonlocal counter
            caller = caller_for(clients[number % len(clients)])
            while not done.is_set():
                counter += 1
                flow = Flow(
                    rng.choice(load_players),
                    "withdrawal",
                    f"failover-{counter}-{secrets.token_hex(4)}",
                    rng.randint(1, 300),
                )
                flows.append(flow)
                await run_flow(caller, flow, rng, think_s=0.05)

        workers = [asyncio.create_task(worker(n)) for n in range(CONCURRENCY)]
        workers += [asyncio.create_task(task) for task in beside(done)]
        try:
            await asyncio.sleep(2.0)
            for kind in kinds:
                await asyncio.sleep(rng.uniform(0.5, 2.5))  # a random moment of the load
                leader = cluster.leader()
                assert leader is not None, cluster.describe()
                fault = Fault(kind, leader.name)
                faults.append(fault)
                settled = asyncio.Event()

                async def settle(fault: Fault, settled: asyncio.Event) -> None:
                    try:
                        await asyncio.to_thread(injector.inject, fault)
                        # Crashed nodes come back (as their service manager would restart
                        # them), then the cluster must be whole before the next fault.
                        while injector.to_restart:
                            await asyncio.to_thread(injector.restart_due)
                            await asyncio.sleep(0.1)
                        await asyncio.to_thread(cluster.wait_healthy, 120)
                        after = cluster.leader()
                        fault.leader_after = after.name if after else "?"
                    finally:
                        fault.injected.set()  # also when the injection failed
                        settled.set()

                await asyncio.gather(
                    settle(fault, settled),
                    _probe(clients, caller_for, probe_player, flows, fault, settled),
                )
            await asyncio.sleep(1.5)
        finally:
            done.set()
            await asyncio.gather(*workers, return_exceptions=False)
            for client in clients:
                await client.aclose()

    try:
        asyncio.run(main())
    finally:
        injector.restart_due(force=True)
    return flows, stats, faults, freeze, successes


def _fault_record(fault: Fault) -> dict[str, Any]:
    """One fault for ``qwallet verify``: its recovery and the cluster's part of it."""
    split = fault.split
    failed, durable = split.get("writesFailedS"), split.get("durableWriteS")
    outage = None
    if fault.recovery_s is not None and failed is not None:
        outage = round(max(0.0, fault.recovery_s - failed), 2)
    return {
        "kind": fault.kind,
        "failover": fault.leader_after != fault.leader_before,
        "recoveryS": None if fault.recovery_s is None else round(fault.recovery_s, 2),
        "clusterS": durable if failed is not None else 0.0,
        "outageS": outage,
        "commandS": fault.command_s,
        "watchdogResetS": fault.watchdog_reset_s,
        "killS": fault.kill_s,
        **split,
    }


def _keep_slow_evidence(
    cluster: PatroniCluster,
    timeline: Timeline,
    faults: list[Fault],
    servers: list[ServerProcess],
    say: Callable[[str], None],
) -> None:
    """Copy the logs that can explain a recovery slower than the target (evidence.py)."""
    offset = time.time() - time.monotonic()
    logs = cluster_logs(cluster.directory, [node.name for node in cluster.nodes])
    logs += [(f"qwallet-{server.log_path.name}", server.log_path) for server in servers]
    kept = keep_evidence(
        [_fault_record(fault) for fault in faults],
        [fault.started for fault in faults],
        RECOVERY_TARGET_S,
        logs,
        {
            "faults": [
                {
                    **_fault_record(fault),
                    "leaderBefore": fault.leader_before,
                    "leaderAfter": fault.leader_after,
                    "startedMonotonic": fault.started,
                    "probes (sent s, answered s, status, code)": fault.trace,
                    "readyz": fault.readyz,
                    "detail": fault.detail,
                }
                for fault in faults
            ],
            "leaders (wall, monotonic, leader, sync standby)": timeline_entries(
                timeline.leaders, offset
            ),
            "directWrites (wall, monotonic, ok, node)": timeline_entries(timeline.writes, offset),
            "watchdogResets": {n.name: n.watchdog_resets for n in cluster.nodes},
        },
        offset_s=offset,
    )
    if kept is not None:
        say(f"[failover] recoveries over {RECOVERY_TARGET_S} s: evidence kept in {kept}")


async def _set_partner(url: str, partner_id: int, **columns: object) -> None:
    store = await open_store(Settings(database_url=url))
    try:
        async with store.transaction() as tx:
            for column, value in columns.items():
                await tx.execute(
                    f"UPDATE partners SET {column} = $1 WHERE id = $2", value, partner_id
                )
    finally:
        await store.close()


async def _callback_secret(url: str, partner_id: int) -> str:
    store = await open_store(Settings(database_url=url))
    try:
        async with store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT callback_secret FROM partners WHERE id = $1", partner_id
            )
        assert row is not None
        return str(row["callback_secret"])
    finally:
        await store.close()


def _say(config: pytest.Config) -> Callable[[str], None]:
    """Write a line to the terminal past pytest's output capture (and to the captured output,
    which a failure report shows)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        print(line)
        if reporter is not None:
            reporter.write_line(line)

    return say


def test_failover_under_load(
    cluster: PatroniCluster, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    rng = random.Random()
    started = time.monotonic()
    url = cluster.url()
    migrate.upgrade(url)
    world = provision(url, player_count=7, balance_minor=5_000 * CENTS)
    # The hold resolver's partner (abandons withdrawals) and the payment worker's (sells).
    holds_world = provision(url, player_count=3, balance_minor=5_000 * CENTS)
    shop_world = provision(url, player_count=3, balance_minor=5_000 * CENTS)
    secret = asyncio.run(_callback_secret(url, shop_world.partner_id))
    servers = [ServerProcess(url, tmp_path / f"server-{i}.log", env=SERVER_ENV) for i in range(2)]
    if scale(1, 0):
        kinds = rng.sample(KINDS, len(KINDS))
    else:
        kinds = [rng.choice(KINDS) for _ in range(LONG_FAILOVERS * 2)]
    abandoned: list[Abandoned] = []
    orders: list[str] = []
    side_stats = CallerStats()
    with partner_servers(tmp_path, secret) as partner:
        asyncio.run(
            _set_partner(
                url,
                holds_world.partner_id,
                query_url=partner.query_url,
                query_username=QUERY_USER,
                query_password=QUERY_PASSWORD,
            )
        )
        asyncio.run(
            _set_partner(
                url,
                shop_world.partner_id,
                callback_url=partner.callback_url,
                callback_format="form",
                allow_http_callback=1,
                payment_currency="XAG",
            )
        )

        def beside(stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
            urls = [server.url for server in servers]
            return [
                abandon_holds(urls, holds_world, partner.kit_db, stop, abandoned, side_stats, rng),
                buy(url, shop_world, partner, stop, orders, rng),
            ]

        for server in servers:
            server.start()
        try:
            with Timeline(cluster) as timeline:
                flows, stats, faults, freeze, successes = _run(
                    cluster, servers, world, kinds, rng, beside
                )
            cluster.wait_healthy(120)
            # The resolver and the workers finish their work on the cluster as it is now.
            settle_s = wait_settled(url, holds_world.partner_id, orders, SETTLE_BOUND_S)
            for server in servers:
                assert server.alive(), server.tail()  # nothing needed a restart
                assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        finally:
            for server in servers:
                server.stop()
        workers = check_workers(url, holds_world, abandoned, orders, partner.callback_log)
    ends = [fault.started for fault in faults[1:]] + [time.monotonic()]
    resets = sorted(t for node in cluster.nodes for t in node.watchdog_resets)
    for fault, end in zip(faults, ends, strict=True):
        fault.split = timeline.after(fault.started, end)
        during = [t for t in resets if fault.started <= t < end]
        if during:
            fault.watchdog_reset_s = round(during[0] - fault.started, 2)
    unplanned_resets = sum(
        1
        for fault, end in zip(faults, ends, strict=True)
        for t in resets
        if fault.started <= t < end and fault.kind != "primary patroni SIGKILL"
    ) + sum(1 for t in resets if not faults or t < faults[0].started)
    _keep_slow_evidence(cluster, timeline, faults, servers, _say(pytestconfig))
    cluster.wait_healthy(120)
    verdict = check_history(url, world, flows)
    holds_verdict = check_history(
        url, holds_world, [item.flow for item in abandoned], all_final=False
    )
    verdict.checks += holds_verdict.checks + workers.checks
    verdict.problems += holds_verdict.problems + workers.problems
    verdict.check(holds_verdict.holds_pending == 0, f"{holds_verdict.holds_pending} holds pending")
    failovers = sum(1 for f in faults if f.leader_after != f.leader_before)
    recoveries = [f.recovery_s for f in faults if f.recovery_s is not None]
    during_freeze = [
        (t, endpoint)
        for t, endpoint in successes
        for start, end in freeze.windows
        if start + 0.5 < t < end
    ]
    verdict.check(
        not during_freeze, f"success answered while the standbys were frozen: {during_freeze}"
    )
    verdict.check(len(recoveries) == len(faults), f"a fault without recovery: {faults}")
    lost = [p for p in verdict.problems if "missing" in p]
    doubled = [p for p in verdict.problems if "available" in p or "several qw" in p]
    record_result(
        "PostgreSQL failover (Patroni, 3 nodes, synchronous_mode_strict)",
        "postgres",
        operations=stats.attempts,
        faults=len(faults),
        failures=len(verdict.problems),
        invariant_checks=verdict.checks,
        holdsOpened=verdict.holds,
        holdsFinalizedByCallers=verdict.holds - verdict.holds_pending,
        holdsLeftPending=verdict.holds_pending,
        flows=len(flows),
        failovers=failovers,
        acknowledgedLost=len(lost),
        doubleApplied=len(doubled),
        recoveryMedianS=round(statistics.median(recoveries), 2) if recoveries else None,
        recoveryMaxS=round(max(recoveries), 2) if recoveries else None,
        recoveriesS=[round(value, 2) for value in recoveries],
        recoveryByFault={f.kind: round(f.recovery_s or -1, 2) for f in faults},
        faultList=[_fault_record(f) for f in faults],
        settings=(
            f"ttl {TTL_S} s, loop_wait {LOOP_WAIT_S} s, retry_timeout {RETRY_TIMEOUT_S} s,"
            f" use_slots off, watchdog required (emulated, safety_margin"
            f" {WATCHDOG_SAFETY_MARGIN_S} s)"
        ),
        syncWaitsCancelled=freeze.cancelled,
        ttlS=TTL_S,
        loopWaitS=LOOP_WAIT_S,
        retryTimeoutS=RETRY_TIMEOUT_S,
        watchdogTimeoutS=WATCHDOG_TIMEOUT_S,
        watchdogResets=len(resets),
        watchdogResetsUnplanned=unplanned_resets,
        http500=stats.http_500,
        workersSettledS=round(settle_s, 1),
        **workers.figures,
        seconds=round(time.monotonic() - started, 1),
    )
    print(
        f"[failover] {failovers} failovers over {len(faults)} faults; recovery median "
        f"{statistics.median(recoveries):.2f} s, max {max(recoveries):.2f} s; "
        + ", ".join(
            f"{f.kind}: {f.recovery_s:.2f} s ({f.leader_before}->{f.leader_after})"
            for f in faults
            if f.recovery_s is not None
        )
    )
    for fault in faults:
        failed = [entry for entry in fault.trace if entry[2] != 200]
        print(
            f"[failover] {fault.kind}: {len(fault.trace)} probes, {len(failed)} failed"
            f" (first answered {failed[0][1] if failed else '-'} s, last"
            f" {failed[-1][1] if failed else '-'} s); recovered at {fault.recovery_s} s;"
            f" cluster: {fault.split}; patronictl {fault.command_s} s;"
            f" watchdog reset {fault.watchdog_reset_s} s"
        )
        print(f"[failover]   probes (sent s, answered s, status, code): {fault.trace}")
    assert not verdict.problems, "\n".join(verdict.problems)
    assert workers.figures["holdsAbandoned"] > 0 and workers.figures["ordersPaid"] > 0, workers
    assert failovers >= (3 if scale(1, 0) else LONG_FAILOVERS), faults
    assert any(503 in f.readyz for f in faults), "/readyz never said 503 during a failover"
    assert all((f.recovery_s or 1e9) <= RECOVERY_BOUND_S for f in faults), faults
