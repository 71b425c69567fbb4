"""Prometheus metrics: requests by endpoint and error code, latency, pending holds.

With several worker processes (``serve --workers N``) the CLI sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start, and ``/metrics`` aggregates every process's samples.
"""

from __future__ import annotations

import os
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


def exposition(
    pending_holds: int, pending_hold_minor_by_currency: dict[str, int]
) -> tuple[bytes, str]:
    """The ``/metrics`` body. Pending holds are read from the database at scrape time."""
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
