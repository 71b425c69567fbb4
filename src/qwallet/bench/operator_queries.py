"""Time the operator pages and the periodic queries, and show their plans.

Each query is called through the function the product calls (``qwallet.admin.queries``,
``service.orders_admin``, ``service.holds``, the payment worker, ``api.metrics``): its SQL lives
there and changes there. One extra call goes through a recording wrapper of the store, so every
statement it ran (with its arguments) can be shown with ``EXPLAIN``. The admin pages are also
fetched over HTTP from the running server, signed in as an operator, as a browser would.
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx

from qwallet.admin import queries
from qwallet.clock import SystemClock
from qwallet.domain.transactions import Kind
from qwallet.payments.delivery import Deliverer, DeliveryPolicy
from qwallet.payments.providers import SandboxCardProvider
from qwallet.service import holds, orders_admin, reconcile
from qwallet.service.gauges import read_database_gauges
from qwallet.settings import Settings
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

PAGE_DEEP = 200
SLOW_S = 2.0
"""A call slower than this is not repeated: on a grown database one call can take the whole
statement timeout, and the figure is clear from one."""
RESOLVER_SCAN_LIMIT = 500  # HoldResolver's default scan_limit


@dataclass
class Timing:
    name: str
    runs_ms: list[float] = field(default_factory=list)
    error: str | None = None
    plans: list[str] = field(default_factory=list)
    """``EXPLAIN`` of each statement the call ran (SQL functions), in order."""
    status: int | None = None
    """HTTP status of the last fetch (pages)."""

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.runs_ms) if self.runs_ms and not self.error else None


class _RecordingTransaction:
    def __init__(self, tx: SqlTransaction, statements: list[tuple[str, tuple[object, ...]]]):
        self._tx, self._statements = tx, statements

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        self._statements.append((sql, args))
        return await self._tx.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        self._statements.append((sql, args))
        return await self._tx.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: object) -> int:
        self._statements.append((sql, args))
        return await self._tx.execute(sql, *args)


class RecordingDatabase:
    """A store that remembers every statement run through it (to ``EXPLAIN`` them after)."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self.dialect = db.dialect
        self.statements: list[tuple[str, tuple[object, ...]]] = []

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._db.transaction() as tx:
            yield _RecordingTransaction(tx, self.statements)


Call = Callable[[SqlDatabase], Awaitable[object]]


def calls(
    settings: Settings, sample_mm_id: str, sample_player: str, deep_cursor: str | None
) -> list[tuple[str, Call]]:
    """Every operator page's queries and every periodic query, by the name the report uses.

    ``deep_cursor`` opens page ``PAGE_DEEP`` (``cursor_of_page``), found before the timings: the
    walk there follows 199 pages, which is not what fetching that page costs.
    """
    clock = SystemClock()

    def cutoff() -> int:
        return clock.now_ms() - settings.hold_window_s * 1000

    async def orders_page(db: SqlDatabase) -> object:
        rows = await orders_admin.list_orders(db, None, limit=queries.PAGE_SIZE + 1)
        return rows, await orders_admin.counts_by_state(db)

    async def holds_page(db: SqlDatabase) -> object:
        return (
            await holds.overdue(db, Kind.WITHDRAWAL, cutoff(), 200),
            await holds.overdue(db, Kind.DEPOSIT, cutoff(), 200),
            await holds.resolutions(db, limit=queries.PAGE_SIZE + 1),
        )

    worker_client: list[httpx.AsyncClient] = []

    async def payment_worker(db: SqlDatabase) -> object:
        # One tick of PaymentWorker: the provider's due events, then the due deliveries (none
        # are due: a delivered or declined order is never picked up, so no callback is sent).
        # The worker builds its HTTP client once, at start; so does this (building one costs
        # about 100 ms here, its TLS context, which a per-tick client would add to the scan;
        # the first timed call builds it, and the median of the runs leaves that one out).
        events = await SandboxCardProvider().due_events(db, clock.now_ms())
        if not worker_client:
            worker_client.append(httpx.AsyncClient(follow_redirects=False))
        deliverer = Deliverer(
            db, clock, worker_client[0], DeliveryPolicy(), settings.currency_registry
        )
        return events, await deliverer.deliver_due()

    nothing = queries.TransactionFilter()

    async def deep_page(db: SqlDatabase) -> object:
        # Pages are keyset-paged: the position of page PAGE_DEEP was found once, by following
        # the "Older" cursors as an operator would; each timed run fetches that page only.
        return await queries.transactions(db, nothing, deep_cursor)

    return [
        ("admin transaction list, page 1", lambda db: queries.transactions(db, nothing)),
        (f"admin transaction list, page {PAGE_DEEP}", deep_page),
        (
            "admin filter by mmTransactionId",
            lambda db: queries.transactions(db, queries.TransactionFilter(mm_id=sample_mm_id)),
        ),
        ("admin dashboard", lambda db: queries.dashboard(db, cutoff())),
        ("admin player page", lambda db: queries.player_activity(db, sample_player)),
        ("admin orders list, page 1", orders_page),
        ("admin holds page", holds_page),
        (
            "hold resolver scan",
            lambda db: holds.overdue(db, Kind.WITHDRAWAL, cutoff(), RESOLVER_SCAN_LIMIT),
        ),
        ("payment worker scan", payment_worker),
        ("metrics gauges", lambda db: read_database_gauges(db, cutoff())),
    ]


async def cursor_of_page(db: SqlDatabase, page: int) -> str | None:
    """The ``after`` cursor that opens page ``page`` (1-based) of the unfiltered list."""
    cursor: str | None = None
    for _ in range(page - 1):
        rows = await queries.transactions(db, queries.TransactionFilter(), cursor)
        following = queries.next_cursor(rows, "qw_transaction_id")
        if following is None:
            break
        cursor = following
    return cursor


def call_names() -> list[str]:
    return [name for name, _ in calls(Settings(), "x", "x", None)]


async def time_calls(
    db: SqlDatabase, named: list[tuple[str, Call]], repeat: int, *, explain: bool
) -> list[Timing]:
    timings = []
    for name, call in named:
        timing = Timing(name)
        started = time.perf_counter()
        try:
            for _ in range(repeat):
                started = time.perf_counter()
                await call(db)
                timing.runs_ms.append((time.perf_counter() - started) * 1000)
                if timing.runs_ms[-1] > SLOW_S * 1000:
                    break
            if explain:
                recorder = RecordingDatabase(db)
                await call(recorder)
                timing.plans = [await _explain(db, sql, args) for sql, args in recorder.statements]
        except Exception as error:  # a timeout is a measured outcome, not a crash of the run
            seconds = time.perf_counter() - started
            timing.error = f"fails: {type(error).__name__} after {seconds:.1f} s"
        timings.append(timing)
    return timings


async def _explain(db: SqlDatabase, sql: str, args: tuple[object, ...]) -> str:
    async with db.transaction() as tx:
        rows = await tx.fetch("EXPLAIN " + sql, *args)
    return "\n".join(str(next(iter(row.values()))) for row in rows)


FULL_RECONCILE = "qwallet reconcile --full"
INCREMENTAL_RECONCILE = "qwallet reconcile (since the checkpoint)"
RECONCILE_ACTOR = "cli:bench"


@dataclass
class Reconciled:
    """One operator run of reconcile: its timing, its verdict, how many entries it read."""

    timing: Timing
    ok: bool | None = None
    """None when the run did not complete (the timing says why)."""
    entries: int = 0
    full: bool = True


async def time_reconcile(db: SqlDatabase, *, full: bool) -> Reconciled:
    """One operator run, as ``qwallet reconcile [--full]`` makes it (``run_reconcile``: same
    pool and statement timeout, audited, a checkpoint written when nothing differs).

    ``full`` proves all of history in batches and leaves a checkpoint; without it only the
    entries after the newest checkpoint are read, which is what ``qwallet reconcile`` does by
    default and what must not grow with history.
    """
    timing = Timing(FULL_RECONCILE if full else INCREMENTAL_RECONCILE)
    started = time.perf_counter()
    try:
        report = await reconcile.run_reconcile(
            db, operator=RECONCILE_ACTOR, now_ms=SystemClock().now_ms(), full=full
        )
    except Exception as error:
        seconds = time.perf_counter() - started
        timing.error = f"fails: {type(error).__name__} after {seconds:.1f} s"
        return Reconciled(timing, full=full)
    timing.runs_ms.append((time.perf_counter() - started) * 1000)
    return Reconciled(timing, report.ok, report.entries, report.full)


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def pages(
    sample_mm_id: str, sample_player: str, deep_cursor: str | None = None
) -> list[tuple[str, str]]:
    """The console pages timed; ``deep_cursor`` opens page ``PAGE_DEEP`` (``cursor_of_page``)."""
    deep = "/admin/transactions" + (f"?{urlencode({'after': deep_cursor})}" if deep_cursor else "")
    return [
        ("page: dashboard", "/admin/"),
        ("page: transactions, page 1", "/admin/transactions"),
        (f"page: transactions, page {PAGE_DEEP}", deep),
        ("page: transactions by mmTransactionId", f"/admin/transactions?mm_id={sample_mm_id}"),
        ("page: player", f"/admin/players/{sample_player}"),
        ("page: orders", "/admin/orders"),
        ("page: holds", "/admin/holds"),
    ]


def time_pages(
    base_url: str, username: str, password: str, named: list[tuple[str, str]], repeat: int
) -> list[Timing]:
    """Sign in to the console and fetch each page ``repeat`` times (wall time per response)."""
    timings = []
    with httpx.Client(base_url=base_url, timeout=60, follow_redirects=False) as client:
        form = client.get("/admin/login").text
        match = _CSRF.search(form)
        token = match.group(1) if match else ""
        signed_in = client.post(
            "/admin/login",
            data={"csrf_token": token, "username": username, "password": password},
        )
        for name, path in named:
            timing = Timing(name)
            if signed_in.status_code != 303:
                timing.error = f"sign-in answered {signed_in.status_code}"
                timings.append(timing)
                continue
            for _ in range(repeat):
                started = time.perf_counter()
                response = client.get(path)
                timing.runs_ms.append((time.perf_counter() - started) * 1000)
                timing.status = response.status_code
                if timing.runs_ms[-1] > SLOW_S * 1000 or response.status_code != 200:
                    break
            if timing.status != 200:
                timing.error = f"HTTP {timing.status}"
            timings.append(timing)
    return timings


__all__ = [
    "FULL_RECONCILE",
    "INCREMENTAL_RECONCILE",
    "Reconciled",
    "RecordingDatabase",
    "Timing",
    "call_names",
    "calls",
    "pages",
    "time_calls",
    "time_pages",
    "time_reconcile",
]
