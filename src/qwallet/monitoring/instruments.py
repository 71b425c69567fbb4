"""The metrics every layer counts in: Wallet API requests, payment delivery, hold resolver, the
settlement days' summarizer.

They live here, not in ``qwallet.api.metrics``, so that the workers and the console's error
history depend on ``prometheus_client`` only and not on the HTTP layer. Every one works in
multiprocess mode (``serve --workers N``): counters are summed over the processes, the gauges
say how.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No ``*_created`` series: before the first instrument is made, whoever imports this first.
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

DELIVERY_OUTCOMES = ("delivered", "retry", "failed")

PAYMENT_DELIVERIES = Counter(
    "qwallet_payment_deliveries",
    "Payment callback attempts by outcome: delivered, retry (failed, will be retried), failed"
    " (the last attempt of a round failed; the order needs an operator).",
    ["outcome"],
)

RESOLVER_RUNS = Counter(
    "qwallet_hold_resolver_runs",
    "Passes of the hold resolver by result: ok, or failed (the pass itself raised).",
    ["result"],
)
RESOLVER_LAST_SUCCESS = Gauge(
    "qwallet_hold_resolver_last_success_timestamp_seconds",
    "Unix time at which a pass of the hold resolver last completed (0: never).",
    multiprocess_mode="max",  # the most recent pass of any process
)
RESOLVER_INTERVAL = Gauge(
    "qwallet_hold_resolver_interval_seconds",
    "Pause between two passes of the hold resolver (0 while no process runs one).",
    multiprocess_mode="livemax",
)

SETTLEMENT_RUNS = Counter(
    "qwallet_settlement_runs",
    "Passes of the settlement days' summarizer by result: ok, or failed (the pass raised).",
    ["result"],
)
SETTLEMENT_DAYS = Counter(
    "qwallet_settlement_days_summarized",
    "Closed (partner, UTC day) pairs the summarizer summed into settlement_days.",
)
SETTLEMENT_LAST_SUCCESS = Gauge(
    "qwallet_settlement_last_success_timestamp_seconds",
    "Unix time at which a pass of the settlement summarizer last completed; before its first"
    " pass (one interval after startup), the time the job started.",
    multiprocess_mode="max",
)
SETTLEMENT_INTERVAL = Gauge(
    "qwallet_settlement_interval_seconds",
    "Pause between two passes of the settlement summarizer (0 while no process runs one).",
    multiprocess_mode="livemax",
)

# Children created up front, so that every outcome is a series (at 0) from the start: a rate over
# a series that appears at its first increment misses that increment.
for _outcome in DELIVERY_OUTCOMES:
    PAYMENT_DELIVERIES.labels(_outcome)
for _result in ("ok", "failed"):
    RESOLVER_RUNS.labels(_result)
    SETTLEMENT_RUNS.labels(_result)


def payment_delivery(outcome: str) -> None:
    PAYMENT_DELIVERIES.labels(outcome).inc()


def resolver_started(interval_s: float) -> None:
    RESOLVER_INTERVAL.set(interval_s)


def resolver_pass(ok: bool) -> None:
    RESOLVER_RUNS.labels("ok" if ok else "failed").inc()
    if ok:
        RESOLVER_LAST_SUCCESS.set(time.time())


def settlement_started(interval_s: float) -> None:
    # The first pass comes an interval after startup: counting from the start keeps the alert
    # (no pass for 5 intervals) quiet until a pass was due, and lets it fire if none ever ends.
    SETTLEMENT_INTERVAL.set(interval_s)
    SETTLEMENT_LAST_SUCCESS.set(time.time())


def settlement_pass(ok: bool, days: int) -> None:
    SETTLEMENT_RUNS.labels("ok" if ok else "failed").inc()
    if ok:
        SETTLEMENT_DAYS.inc(days)
        SETTLEMENT_LAST_SUCCESS.set(time.time())
