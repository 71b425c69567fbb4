"""Prometheus metrics: requests by endpoint and error code, latency, the database gauges.

With several worker processes (``serve --workers N``) the CLI sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start, and ``/metrics`` aggregates every process's samples. The metrics of
the background workers (payment delivery, hold resolver) are in ``qwallet.monitoring.instruments``;
the rules and the dashboard built on all of them in ``qwallet.monitoring`` (docs/operations.md).

``/metrics`` is not public: :class:`MetricsAccess` lets in the addresses of
``settings.metrics_allow`` (the client address by the trusted-proxy rule of
``qwallet.api.auth``) and requests with ``Authorization: Bearer <settings.metrics_token>``
(compared in constant time); everyone else gets 403. The gauges read from the database (pending
and overdue holds, the newest reconciliation) come from :class:`DatabaseGaugeCache`, refreshed at
most every ``settings.metrics_cache_s`` per process, so a flood of scrapes costs no queries; when
the database does not answer, the scrape still answers, with ``qwallet_ready 0``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from qwallet.api.auth import ClientAddressResolver, forwarded_for, networks
from qwallet.clock import Clock
from qwallet.monitoring import build
from qwallet.monitoring.instruments import LATENCY, REQUESTS
from qwallet.service.gauges import DatabaseGauges, read_database_gauges
from qwallet.settings import Settings
from qwallet.store.sql import SqlDatabase

logger = logging.getLogger("qwallet.api.metrics")

DATABASE_READ_TIMEOUT_S = 2.0
"""A scrape waits no longer for the database gauges: Prometheus must get an answer (with
``qwallet_ready 0``) while the database is down, well within its scrape timeout."""
POOL_SAMPLE_S = 1.0

POOL_OPEN = Gauge(
    "qwallet_db_pool_connections_open",
    "PostgreSQL connections open in the pools of the server processes.",
    multiprocess_mode="livesum",
)
POOL_IN_USE = Gauge(
    "qwallet_db_pool_connections_in_use",
    "PostgreSQL connections taken from the pools of the server processes (busy).",
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "qwallet_db_pool_connections_max",
    "The most connections the pools of the server processes may open (QWALLET_PG_POOL_MAX each).",
    multiprocess_mode="livesum",
)


_children: dict[tuple[str, int], tuple[Any, Any]] = {}
"""(counter child, histogram child) per (endpoint, code): ``labels()`` validates and locks on
every call, half the cost of an observation. Bounded: the endpoints and codes are fixed sets."""


def observe(endpoint: str, code: int, duration_s: float) -> None:
    children = _children.get((endpoint, code))
    if children is None:
        children = (REQUESTS.labels(endpoint, str(code)), LATENCY.labels(endpoint))
        _children[(endpoint, code)] = children
    children[0].inc()
    children[1].observe(duration_s)
    POOLS.maybe_sample()


class MetricsAccess:
    """Who may read ``/metrics``: an allowed address, or the bearer token when one is set."""

    def __init__(
        self, allow: tuple[str, ...], token: str | None, trusted_proxies: tuple[str, ...]
    ) -> None:
        self._allow = networks(allow)
        self._token = token.encode() if token else None
        self._addresses = ClientAddressResolver(trusted_proxies)

    def allowed(
        self, peer: str | None, forwarded_for: bytes | None, authorization: bytes | None
    ) -> bool:
        if self._token is not None and authorization:
            scheme, _, credential = authorization.partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self._token):
                return True
        address = self._addresses.resolve(peer, forwarded_for)
        return address is not None and any(address in network for network in self._allow)


class DatabaseGaugeCache:
    """The database gauges, read at most every ``max_age_s``; concurrent scrapes of a stale
    value share one read. A read that fails or takes longer than ``timeout_s`` gives ``None``
    (the database is not answering: ``qwallet_ready 0``) and is cached as well, so that a flood
    of scrapes during an outage costs one attempt per ``max_age_s`` and never hangs a scrape."""

    def __init__(
        self,
        store: SqlDatabase,
        max_age_s: float,
        hold_window_s: int,
        *,
        timeout_s: float = DATABASE_READ_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._hold_window_ms = hold_window_s * 1000
        self._timeout_s = timeout_s
        self._clock = clock
        self._value: DatabaseGauges | None = None
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock() - self._read_at < self._max_age_s

    async def read(self, now_ms: int) -> DatabaseGauges | None:
        if self._fresh():
            return self._value
        async with self._lock:
            if self._fresh():  # read by the scrape we waited for
                return self._value
            try:
                self._value = await asyncio.wait_for(
                    read_database_gauges(self._store, now_ms - self._hold_window_ms),
                    timeout=self._timeout_s,
                )
            except Exception:
                logger.warning("metrics: the database gauges could not be read", exc_info=True)
                self._value = None
            self._read_at = self._clock()
            return self._value


@dataclass(frozen=True, slots=True)
class PoolUsage:
    open: int
    in_use: int
    max: int


def pool_usage(store: object) -> PoolUsage | None:
    """The PostgreSQL adapter's asyncpg pool, counted without a query; ``None`` for SQLite
    (one connection per process, no pool)."""
    pool = getattr(store, "_pool", None)
    if pool is None or not hasattr(pool, "get_idle_size"):
        return None
    size = int(pool.get_size())
    return PoolUsage(open=size, in_use=size - int(pool.get_idle_size()), max=pool.get_max_size())


class PoolGauges:
    """This process's pool as gauges summed over the processes (``--workers N``). Sampled when
    this process answers a scrape, and at most every ``POOL_SAMPLE_S`` while it serves wallet
    calls (from :func:`observe`), so the sum does not lean on the one process that is scraped."""

    def __init__(self) -> None:
        self._store: object | None = None
        self._next_sample = 0.0

    def watch(self, store: object) -> None:
        self._store = store if pool_usage(store) is not None else None
        self.sample()

    def sample(self) -> None:
        usage = pool_usage(self._store) if self._store is not None else None
        if usage is None:
            return
        POOL_OPEN.set(usage.open)
        POOL_IN_USE.set(usage.in_use)
        POOL_MAX.set(usage.max)
        self._next_sample = time.monotonic() + POOL_SAMPLE_S

    def maybe_sample(self) -> None:
        if self._store is not None and time.monotonic() >= self._next_sample:
            self.sample()


POOLS = PoolGauges()


class MetricsEndpoint:
    """``GET /metrics``: 403 unless :class:`MetricsAccess` lets the caller in."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._access = MetricsAccess(
            settings.metrics_allow, settings.metrics_token, settings.trusted_proxies
        )
        self._gauges: DatabaseGaugeCache | None = None
        self._currencies = tuple(currency.code for currency in settings.currencies)

    def start(self, store: SqlDatabase) -> None:
        self._gauges = DatabaseGaugeCache(
            store, self._settings.metrics_cache_s, self._settings.hold_window_s
        )
        POOLS.watch(store)

    def routes(self, clock: Clock) -> list[BaseRoute]:
        async def endpoint(request: Request) -> Response:
            return await self(request, clock.now_ms())

        return [Route("/metrics", endpoint)]

    async def __call__(self, request: Request, now_ms: int) -> Response:
        assert self._gauges is not None
        if not self._access.allowed(*_caller(request)):
            return JSONResponse(
                {"detail": "Metrics are readable only from an allowed address or with the token."},
                status_code=403,
            )
        POOLS.sample()
        body, content_type = exposition(await self._gauges.read(now_ms), self._currencies)
        return Response(body, media_type=content_type)


def _caller(request: Request) -> tuple[str | None, bytes | None, bytes | None]:
    """(TCP peer, ``X-Forwarded-For``, ``Authorization``) of the request."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    authorization = next((value for name, value in headers if name == b"authorization"), None)
    peer = request.client.host if request.client else None
    return peer, forwarded_for(headers), authorization


def exposition(
    gauges: DatabaseGauges | None, currencies: tuple[str, ...] = ()
) -> tuple[bytes, str]:
    """The ``/metrics`` body: the registry (every process's, in multiprocess mode), then this
    process's build and the database gauges from :class:`DatabaseGaugeCache` (``None``: the
    database did not answer, so only ``qwallet_ready 0``). Held funds are listed for every
    configured currency (0 when nothing is held) and any other one that has holds."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    lines = [
        "# HELP qwallet_build_info The running version (value 1).",
        "# TYPE qwallet_build_info gauge",
        f'qwallet_build_info{{version="{_label(build.version())}"}} 1',
        "# HELP qwallet_ready 1 when the database answered the last metrics read, else 0.",
        "# TYPE qwallet_ready gauge",
        f"qwallet_ready {0 if gauges is None else 1}",
    ]
    if gauges is not None:
        lines += [
            "# HELP qwallet_pending_holds Withdrawals awaiting confirm or rollback.",
            "# TYPE qwallet_pending_holds gauge",
            f"qwallet_pending_holds {gauges.pending_holds}",
            "# HELP qwallet_pending_hold_minor Held funds awaiting confirm or rollback, minor"
            " units.",
            "# TYPE qwallet_pending_hold_minor gauge",
            *(
                f'qwallet_pending_hold_minor{{currency="{_label(code)}"}} {amount}'
                for code, amount in sorted(
                    ({code: 0 for code in currencies} | gauges.pending_hold_minor).items()
                )
            ),
            "# HELP qwallet_overdue_holds Pending withdrawals older than the hold window"
            " (QWALLET_HOLD_WINDOW_S): the hold resolver's to resolve.",
            "# TYPE qwallet_overdue_holds gauge",
            f"qwallet_overdue_holds {gauges.overdue_holds}",
        ]
        if gauges.last_reconcile is not None:
            at_ms, ok = gauges.last_reconcile
            lines += [
                "# HELP qwallet_reconcile_last_ok 1 when the newest reconciliation found no"
                " difference, else 0.",
                "# TYPE qwallet_reconcile_last_ok gauge",
                f"qwallet_reconcile_last_ok {int(ok)}",
                "# HELP qwallet_reconcile_last_run_timestamp_seconds Unix time of the newest"
                " reconciliation.",
                "# TYPE qwallet_reconcile_last_run_timestamp_seconds gauge",
                f"qwallet_reconcile_last_run_timestamp_seconds {at_ms / 1000:.3f}",
            ]
    return body + ("\n".join(lines) + "\n").encode(), CONTENT_TYPE_LATEST


def _label(value: str) -> str:
    """A label value as the text format wants it (backslash, quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
