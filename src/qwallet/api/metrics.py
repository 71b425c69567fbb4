"""Prometheus metrics: requests by endpoint and error code, latency, pending holds.

With several worker processes (``serve --workers N``) the CLI sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start, and ``/metrics`` aggregates every process's samples.

``/metrics`` is not public: :class:`MetricsAccess` lets in the addresses of
``settings.metrics_allow`` (the client address by the trusted-proxy rule of
``qwallet.api.auth``) and requests with ``Authorization: Bearer <settings.metrics_token>``
(compared in constant time); everyone else gets 403. The gauges read from the database come from
:class:`PendingHoldsGauge`, refreshed at most every ``settings.metrics_cache_s`` per process, so
a flood of scrapes costs no queries.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from qwallet.api.auth import ClientAddressResolver, forwarded_for, networks
from qwallet.settings import Settings
from qwallet.store.sql import SqlDatabase

disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "qwallet_requests_total",
    "Wallet API requests by endpoint and result code (0 = success).",
    ["endpoint", "code"],
)
LATENCY = Histogram(
    "qwallet_request_duration_seconds",
    "Wallet API request latency, from the first byte of the request to the answer.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
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


PendingHolds = tuple[int, dict[str, int]]


async def read_pending_holds(store: SqlDatabase) -> PendingHolds:
    """Pending withdrawals and their held amounts per currency: one query."""
    async with store.transaction() as tx:
        rows = await tx.fetch(
            "SELECT currency, COUNT(*) AS holds, SUM(amount_minor) AS held FROM transactions"
            " WHERE state = 'pending' AND kind = 'withdrawal' GROUP BY currency"
        )
    return (
        sum(int(row["holds"]) for row in rows),
        {str(row["currency"]): int(row["held"]) for row in rows},
    )


class PendingHoldsGauge:
    """The pending-holds gauges, read at most every ``max_age_s``; concurrent scrapes of a stale
    value share one read."""

    def __init__(
        self,
        store: SqlDatabase,
        max_age_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._clock = clock
        self._value: PendingHolds | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> PendingHolds | None:
        if self._value is not None and self._clock() - self._read_at < self._max_age_s:
            return self._value
        return None

    async def read(self) -> PendingHolds:
        if (value := self._fresh()) is not None:
            return value
        async with self._lock:
            if (value := self._fresh()) is not None:  # read by the scrape we waited for
                return value
            value = await read_pending_holds(self._store)
            self._value, self._read_at = value, self._clock()
            return value


class MetricsEndpoint:
    """``GET /metrics``: 403 unless :class:`MetricsAccess` lets the caller in."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._access = MetricsAccess(
            settings.metrics_allow, settings.metrics_token, settings.trusted_proxies
        )
        self._gauge: PendingHoldsGauge | None = None

    def start(self, store: SqlDatabase) -> None:
        self._gauge = PendingHoldsGauge(store, self._settings.metrics_cache_s)

    async def __call__(self, request: Request) -> Response:
        assert self._gauge is not None
        if not self._access.allowed(*_caller(request)):
            return JSONResponse(
                {"detail": "Metrics are readable only from an allowed address or with the token."},
                status_code=403,
            )
        holds, held_minor = await self._gauge.read()
        body, content_type = exposition(holds, held_minor)
        return Response(body, media_type=content_type)


def _caller(request: Request) -> tuple[str | None, bytes | None, bytes | None]:
    """(TCP peer, ``X-Forwarded-For``, ``Authorization``) of the request."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    authorization = next((value for name, value in headers if name == b"authorization"), None)
    peer = request.client.host if request.client else None
    return peer, forwarded_for(headers), authorization


def exposition(
    pending_holds: int, pending_hold_minor_by_currency: dict[str, int]
) -> tuple[bytes, str]:
    """The ``/metrics`` body; the pending holds come from :class:`PendingHoldsGauge`."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    lines = [
        "# HELP qwallet_pending_holds Withdrawals awaiting confirm or rollback.",
        "# TYPE qwallet_pending_holds gauge",
        f"qwallet_pending_holds {pending_holds}",
        "# HELP qwallet_pending_hold_minor Held funds awaiting confirm or rollback, minor units.",
        "# TYPE qwallet_pending_hold_minor gauge",
    ]
    lines += [
        f'qwallet_pending_hold_minor{{currency="{code}"}} {amount}'
        for code, amount in sorted(pending_hold_minor_by_currency.items())
    ]
    return body + ("\n".join(lines) + "\n").encode(), CONTENT_TYPE_LATEST
