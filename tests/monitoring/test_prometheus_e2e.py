"""End to end: a real Prometheus scrapes a running ``qwallet serve --workers 2`` with the shipped
rules (durations shortened to seconds, nothing else changed) and every alert fires and resolves.

The server reaches its PostgreSQL database through a loopback TCP proxy, so "the database stops"
is real for it (connections cut, new ones refused) while the test keeps its own direct access.
Prometheus scrapes with the bearer token, the server allowing no address. Conditions provoked:
holds left pending past a 2 s window while more arrive; a paid order whose partner has no
callback URL (every attempt fails, the last one gives up); a reconciliation that finds a
corrupted balance; the database stopped under wallet traffic (the hold resolver's and the
settlement summarizer's passes fail too); the server stopped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.conftest import fresh_database_url
from tests.monitoring import prom
from tests.reliability.faults import TcpProxy
from tests.reliability.harness import QWALLET, ServerProcess, World, provision

RANGE_S = 10  # every [5m], [15m], [1h] of the rules
FOR_S = 3  # every `for:` of the rules
HOLD_WINDOW_S = 2
TOKEN = secrets.token_urlsafe(32)
TIME_LIMIT_S = 150

pytestmark = pytest.mark.timeout(TIME_LIMIT_S + 60)


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = (
        parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc.rsplit("@", 1)[-1] else parts.netloc
    )
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))


def _sql(url: str, statement: str, *args: object) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()

    asyncio.run(run())


def _money(amount: str) -> dict[str, object]:
    return {"amount": float(amount), "currencyCode": "XAG"}


class Traffic:
    """getBalance calls in a thread, ``rate_hz`` per second, until stopped; counts statuses."""

    def __init__(self, server: ServerProcess, world: World, rate_hz: float = 20) -> None:
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(server, world, rate_hz), daemon=True
        )

    def _run(self, server: ServerProcess, world: World, rate_hz: float) -> None:
        with httpx.Client(
            base_url=server.url, auth=(world.username, world.password), timeout=5
        ) as client:
            while not self._stop.is_set():
                try:
                    status = client.post(
                        "/wallet/getBalance", json={"token": world.players[0].token}
                    ).status_code
                except httpx.TransportError:
                    status = 0
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self._stop.wait(1 / rate_hz)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Watcher:
    """Polls Prometheus's alerts in a thread: every alert seen firing, and the active ones now
    (an alert whose window is short may fire and resolve between two looks of the test)."""

    def __init__(self, prometheus: prom.Prometheus) -> None:
        self.prometheus = prometheus
        self.fired: set[str] = set()
        self.active: set[str] = set()
        self.annotations: dict[str, dict[str, str]] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                alerts = self.prometheus.alerts()
            except httpx.HTTPError:
                continue
            for name, alert in alerts.items():
                if alert["state"] == "firing":
                    self.fired.add(name)
                    self.annotations[name] = alert["annotations"]
                    self.labels[name] = alert["labels"]
            self.active = set(alerts)
            self._stop.wait(0.2)

    def wait(self, what: str, condition: Callable[[], bool], timeout_s: float = 40) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout_s} s; fired {self.fired}, active"
                    f" {self.prometheus.alerts()}\n{self.prometheus.tail()}"
                )
            time.sleep(0.2)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url("postgres", tmp_path)


def test_every_alert_fires_and_resolves_on_a_real_prometheus(pg_url: str, tmp_path: Path) -> None:
    database_url = pg_url
    started = time.monotonic()
    prom.binary("promtool")
    world = provision(database_url, player_count=2, balance_minor=1_000_000)
    proxy = TcpProxy(urlsplit(database_url).port or 5432)
    proxy.start()
    server = ServerProcess(
        _through(database_url, proxy.port),
        tmp_path / "server.log",
        workers=2,
        env={
            "QWALLET_HOLD_WINDOW_S": str(HOLD_WINDOW_S),
            "QWALLET_HOLD_RESOLVER_INTERVAL_S": "1",
            "QWALLET_METRICS_CACHE_S": "0.5",
            "QWALLET_METRICS_ALLOW": "",  # only the token: Prometheus "on another machine"
            "QWALLET_METRICS_TOKEN": TOKEN,
            "QWALLET_PAYMENT_WORKER_INTERVAL_S": "0.3",
            "QWALLET_PAYMENT_RETRY_SCHEDULE_S": "0.3",
            "QWALLET_PAYMENT_MAX_ATTEMPTS": "3",
            "QWALLET_PG_POOL_MIN": "1",
            "QWALLET_SETTLEMENT_INTERVAL_S": "1",
        },
    )
    (tmp_path / "token").write_text(TOKEN)
    prometheus = prom.Prometheus(
        tmp_path / "prometheus",
        prom.shortened_rules(RANGE_S, FOR_S),
        {
            "job_name": "qwallet",
            "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "token")},
            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
        },
    )
    try:
        server.start()
        assert httpx.get(f"{server.url}/metrics").status_code == 403  # no address is allowed
        prometheus.start()
        with Watcher(prometheus) as watch:
            _scenario(watch, server, proxy, world, database_url)
    finally:
        prometheus.stop()
        server.stop()
        proxy.stop()
    assert time.monotonic() - started < TIME_LIMIT_S


def _scenario(
    watch: Watcher, server: ServerProcess, proxy: TcpProxy, world: World, database_url: str
) -> None:
    prometheus = watch.prometheus
    watch.wait("the target is scraped", prometheus.targets_up)
    assert prometheus.firing() == set(), prometheus.alerts()
    assert watch.fired == set()

    # -- holds past the window, growing; a payment that cannot be delivered; a bad balance
    wallet = httpx.Client(base_url=server.url, auth=(world.username, world.password), timeout=10)
    token = world.players[0].token
    _sql(
        database_url,
        "INSERT INTO payment_orders (id, partner_id, player_id, cp_order_id, server_id,"
        " product_id, product_number, product_price, amount_minor, currency, ext_params,"
        " state, method, delivery_attempts, next_delivery_at_ms, created_at_ms,"
        " updated_at_ms, paid_at_ms) VALUES ($1, $2, $3, 'cp-1', '1', 'gems', 1, '1.00',"
        " 100, 'XAG', '', 'paid', 'wallet', 0, $4, $4, $4, $4)",
        str(uuid.uuid4()),
        world.partner_id,
        world.players[1].player_id,
        int(time.time() * 1000),
    )
    _sql(
        database_url,
        "UPDATE players SET available_minor = available_minor + 1 WHERE id = $1",
        world.players[1].player_id,
    )
    reconcile = subprocess.run(
        [QWALLET, "reconcile"],
        env={**os.environ, "QWALLET_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reconcile.returncode == 1, reconcile.stdout + reconcile.stderr
    mm_ids = []
    growth_until = time.monotonic() + RANGE_S + FOR_S + 4
    while time.monotonic() < growth_until:
        mm_id = f"hold-{len(mm_ids)}"
        answer = wallet.post(
            "/wallet/withdraw",
            json={"token": token, "mmTransactionId": mm_id, "amount": _money("1.00")},
        )
        assert answer.status_code == 200, answer.text
        mm_ids.append(mm_id)
        time.sleep(0.5)
    first = {
        "QWalletOverdueHolds",
        "QWalletPendingHoldsGrowing",
        "QWalletPaymentDeliveryFailed",
        "QWalletPaymentDeliveriesRetrying",
        "QWalletReconciliationFailing",
    }
    watch.wait(f"{first} fire", lambda: first <= watch.fired)
    assert watch.labels["QWalletReconciliationFailing"]["severity"] == "critical"
    summary = watch.annotations["QWalletOverdueHolds"]["summary"]
    assert summary.endswith("withdrawal holds are pending past the hold window"), summary

    for mm_id in mm_ids:
        answer = wallet.post(
            "/wallet/confirmWithdrawal",
            json={"token": token, "mmTransactionId": mm_id, "amount": _money("1.00")},
        )
        assert answer.status_code == 200, answer.text
    _sql(
        database_url,
        "UPDATE players SET available_minor = available_minor - 1 WHERE id = $1",
        world.players[1].player_id,
    )
    reconcile = subprocess.run(
        [QWALLET, "reconcile"],
        env={**os.environ, "QWALLET_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
    watch.wait("they resolve", lambda: not (first & watch.active), RANGE_S + 30)
    assert watch.fired == first, watch.fired  # and nothing else fired

    # -- the database stops under traffic
    with Traffic(server, world) as traffic:
        time.sleep(2)
        proxy.refuse(True)
        proxy.cut()
        second = {
            "QWalletNotReady",
            "QWalletWalletErrors",
            "QWalletHoldResolverNotRunning",
            "QWalletSettlementNotRunning",
        }
        watch.wait(f"{second} fire", lambda: second <= watch.fired)
        assert traffic.statuses.get(500, 0) > 0, traffic.statuses
        proxy.refuse(False)
        watch.wait("they resolve", lambda: not (second & watch.active), RANGE_S + 30)
    assert traffic.statuses.get(200, 0) > 0, traffic.statuses

    # -- the server stops
    server.stop()
    watch.wait("QWalletDown fires", lambda: "QWalletDown" in watch.fired)
    server.start()
    watch.wait("QWalletDown resolves", lambda: not watch.active)
    assert watch.fired == first | second | {"QWalletDown"}, watch.fired
    assert watch.fired == set(prom.alert_names())  # every shipped alert was seen firing
    wallet.close()
