"""Time the operator pages and the periodic queries, and show their plans.

Each query is called through the function the product calls (``qwallet.admin.queries``,
``service.orders_admin``, ``service.holds``, the payment worker, ``api.metrics``): its SQL lives
there and changes there. One extra call goes through a recording wrapper of the store, so every
statement it ran (with its arguments) can be shown with ``EXPLAIN``. The admin pages are also
fetched over HTTP from the running server, signed in as an operator, as a browser would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import httpx

from qwallet.admin import queries
from qwallet.bench.statement_times import StatementTime, TimedDatabase, statement_names
from qwallet.clock import SystemClock
from qwallet.domain.ids import NIL_ID
from qwallet.domain.transactions import Kind
from qwallet.payments.delivery import Deliverer, DeliveryPolicy
from qwallet.payments.providers import SandboxCardProvider
from qwallet.service import (
    audit,
    holds,
    orders_admin,
    partner_reports,
    protocol_report,
    reconcile,
    settlement_days,
)
from qwallet.service.gauges import read_database_gauges
from qwallet.settings import Settings
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

PAGE_DEEP = 200
SLOW_S = 2.0
"""A call slower than this is not repeated: on a grown database one call can take the whole
statement timeout, and the figure is clear from one."""
RESOLVER_SCAN_LIMIT = 500  # HoldResolver's default scan_limit
SETTLEMENT_DAYS = 31  # the longest range the settlement page accepts (a month's settlement)


@dataclass
class Timing:
    name: str
    runs_ms: list[float] = field(default_factory=list)
    error: str | None = None
    plans: list[str] = field(default_factory=list)
    """``EXPLAIN`` of each statement the call ran (SQL functions), in order."""
    status: int | None = None
    """HTTP status of the last fetch (pages)."""
    skipped: str | None = None
    """Why the row was not run in this phase (nothing to open there); not a failure."""

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.runs_ms) if self.runs_ms and not self.error else None

    @property
    def p99_ms(self) -> float | None:
        """Nearest-rank p99 of the runs: with fewer than 100 runs, the slowest one."""
        if not self.runs_ms or self.error:
            return None
        ordered = sorted(self.runs_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Samples:
    """What the timed pages open, taken from the phase's own data just before the timings
    (``growth._samples``): a transaction in the middle of the stored time range, its player and
    its UTC day, an order in the middle of the orders, the partner with the most traffic."""

    mm_id: str = "x"
    qw_id: str = NIL_ID
    player: str = "x"
    nickname: str = "x"
    day: dt.date = dt.date(2026, 1, 1)
    order_id: str | None = None
    """None when no order is stored (the empty phase): that row is then not fetched."""
    deep_cursor: str | None = None
    """Opens page ``PAGE_DEEP`` of the unfiltered list (``cursor_of_page``)."""
    busiest_partner: str = "bench"
    sandbox_partner: str = "bench-sandbox"
    operator: str = "x"


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


def calls(settings: Settings, samples: Samples | None = None) -> list[tuple[str, Call]]:
    """Every operator page's queries and every periodic query, by the name the report uses.

    ``samples.deep_cursor`` opens page ``PAGE_DEEP`` (``cursor_of_page``), found before the
    timings: the walk there follows 199 pages, which is not what fetching that page costs.
    The rows of the pages that read the most (settlement, protocol report, player search) are
    here too, so that their plans are shown.
    """
    s = samples or Samples()
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

    async def settlement_marks(db: SqlDatabase) -> object:
        # What the settlement job reads before it sums anything, in a process's first pass
        # (no cursors yet): each partner's horizon (one seek), then its done marks from there
        # (index-only), up to a pass's worth of days to do.
        end = partner_reports.closed_before(clock.now_ms())
        found = []
        for partner_id, _ in await settlement_days.partners(db):
            start = await settlement_days.horizon(db, partner_id)
            if start is not None:
                found.append(
                    await settlement_days.undone_days(
                        db, partner_id, start, end, settlement_days.MAX_DAYS_PER_PASS
                    )
                )
        return found

    async def settlement_day(db: SqlDatabase) -> object:
        # The job summing one closed day of the busiest partner: the newest closed day, stored
        # already by ``settle``, so each run reads what a first summary reads and its inserts
        # conflict and write nothing (the same work, and the database is left as it was).
        day = partner_reports.closed_before(clock.now_ms()) - 1
        for _, partner_id in await partner_reports.partner_ids(db, s.busiest_partner):
            await partner_reports.summarize_day(db, partner_id, day)
        return day

    nothing = queries.TransactionFilter()

    async def deep_page(db: SqlDatabase) -> object:
        # Pages are keyset-paged: the position of page PAGE_DEEP was found once, by following
        # the "Older" cursors as an operator would; each timed run fetches that page only.
        return await queries.transactions(db, nothing, s.deep_cursor)

    async def settlement(db: SqlDatabase, partner: str | None, days: int) -> object:
        # As the settlement page does on a server whose settlement job has run (``settle``,
        # before the timings): each partner's closed days read back from their summaries,
        # today summed live.
        first = s.day - dt.timedelta(days=days - 1)
        return [
            await partner_reports.settlement(db, partner_id, first, s.day)
            for _, partner_id in await partner_reports.partner_ids(db, partner)
        ]

    def day_ms() -> int:
        return (
            int(dt.datetime(s.day.year, s.day.month, s.day.day, tzinfo=dt.UTC).timestamp()) * 1000
        )

    async def busy_report(db: SqlDatabase) -> object:
        since = day_ms()
        return await protocol_report.report(
            db, s.busiest_partner, since, since + 86_400_000, clock.now_ms()
        )

    return [
        ("admin transaction list, page 1", lambda db: queries.transactions(db, nothing)),
        (f"admin transaction list, page {PAGE_DEEP}", deep_page),
        (
            "admin filter by mmTransactionId",
            lambda db: queries.transactions(db, queries.TransactionFilter(mm_id=s.mm_id)),
        ),
        (
            "admin filter by player",
            lambda db: queries.transactions(db, queries.TransactionFilter(player=s.player)),
        ),
        ("admin transaction page", lambda db: queries.transaction_detail(db, s.qw_id)),
        ("admin players list", lambda db: queries.search_players(db, "")),
        ("admin players search by nickname", lambda db: queries.search_players(db, s.nickname)),
        ("admin dashboard", lambda db: queries.dashboard(db, cutoff())),
        ("admin player page", lambda db: queries.player_activity(db, s.player)),
        ("admin orders list, page 1", orders_page),
        ("admin holds page", holds_page),
        (
            "admin audit log by operator",
            lambda db: audit.entries(db, operator=s.operator, limit=queries.PAGE_SIZE + 1),
        ),
        ("admin settlement, every partner, one day", lambda db: settlement(db, None, 1)),
        (
            f"admin settlement, busiest partner, {SETTLEMENT_DAYS} days",
            lambda db: settlement(db, s.busiest_partner, SETTLEMENT_DAYS),
        ),
        ("protocol report, busiest partner, one day", busy_report),
        (
            "hold resolver scan",
            lambda db: holds.overdue(db, Kind.WITHDRAWAL, cutoff(), RESOLVER_SCAN_LIMIT),
        ),
        ("payment worker scan", payment_worker),
        ("settlement job: horizons and day marks, every partner", settlement_marks),
        ("settlement job: one closed day summed, busiest partner", settlement_day),
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
    return [name for name, _ in calls(Settings())]


async def settle(db: SqlDatabase, samples: Samples) -> int:
    """Store the closed settlement days the timed settlement rows and pages read, as the
    server's periodic job has by the time an operator asks (a bulk-loaded database was never
    seen by it). Returns the days stored."""
    since = samples.day - dt.timedelta(days=SETTLEMENT_DAYS - 1)
    stored = 0
    for item in await settlement_days.backlog(db, SystemClock().now_ms(), since=since):
        for number in item.days:
            await partner_reports.summarize_day(db, item.partner_id, number)
            stored += 1
    return stored


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
    statements: list[StatementTime] = field(default_factory=list)
    """Where the run's database time went, slowest statement first (``statement_times``)."""


async def time_reconcile(db: SqlDatabase, *, full: bool) -> Reconciled:
    """One operator run, as ``qwallet reconcile [--full]`` makes it (``run_reconcile``: same
    pool and statement timeout, audited, a checkpoint written when nothing differs).

    ``full`` proves all of history in batches and leaves a checkpoint; without it only the
    entries after the newest checkpoint are read, which is what ``qwallet reconcile`` does by
    default and what must not grow with history.
    """
    timing = Timing(FULL_RECONCILE if full else INCREMENTAL_RECONCILE)
    timed = TimedDatabase(db, statement_names(reconcile))
    started = time.perf_counter()
    try:
        report = await reconcile.run_reconcile(
            timed, operator=RECONCILE_ACTOR, now_ms=SystemClock().now_ms(), full=full
        )
    except Exception as error:
        seconds = time.perf_counter() - started
        timing.error = f"fails: {type(error).__name__} after {seconds:.1f} s"
        return Reconciled(timing, full=full, statements=timed.by_time())
    timing.runs_ms.append((time.perf_counter() - started) * 1000)
    return Reconciled(timing, report.ok, report.entries, report.full, timed.by_time())


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

SANDBOX_WINDOW = "24h"
SANDBOX_RULE: dict[str, object] = {
    "endpoint": "withdraw",
    "action": "delay",
    "delayMs": 1,
    "next": 1,
}
"""The rule the fault-rule rows add and remove: the sandbox partner gets no traffic, so it never
fires; added and removed in pairs, so the partner's live rules never pile up."""


@dataclass(frozen=True)
class Fetch:
    """One timed HTTP request: a console page (signed in) or an operator API call (bearer key)."""

    name: str
    path: str
    method: str = "GET"
    body: dict[str, object] | None = None
    api: bool = False
    status: int = 200
    creates: bool = False
    """Its answer's ``id`` is kept for a later fetch whose path holds ``{created}``."""
    missing: str | None = None
    """Why the row cannot be fetched in this phase (nothing stored to open); not a failure."""


def _url(path: str, **params: str) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def pages(samples: Samples | None = None) -> list[Fetch]:
    """Every page of the console, with parameters that make it work on a grown database."""
    s = samples or Samples()
    day = s.day.isoformat()
    month = (s.day - dt.timedelta(days=SETTLEMENT_DAYS - 1)).isoformat()
    deep = _url("/admin/transactions", **({"after": s.deep_cursor} if s.deep_cursor else {}))
    listing = "/admin/transactions"
    sandbox = f"/admin/partners/{quote(s.sandbox_partner, safe='')}/sandbox"
    busy_sandbox = f"/admin/partners/{quote(s.busiest_partner, safe='')}/sandbox"
    busy_month = {"partner": s.busiest_partner, "from": month, "to": day}
    order = (
        Fetch("page: order", f"/admin/orders/{quote(s.order_id, safe='')}")
        if s.order_id
        else Fetch("page: order", "/admin/orders/-", missing="no order stored")
    )
    return [
        Fetch("page: dashboard", "/admin/"),
        Fetch("page: transactions, page 1", listing),
        Fetch(f"page: transactions, page {PAGE_DEEP}", deep),
        Fetch("page: transactions by mmTransactionId", _url(listing, mm_id=s.mm_id)),
        Fetch("page: transactions by player", _url(listing, player=s.player)),
        Fetch("page: transactions by partner (busiest)", _url(listing, partner=s.busiest_partner)),
        Fetch("page: transactions of one day", _url(listing, date_from=day, date_to=day)),
        Fetch("page: transactions by state (rolled back)", _url(listing, state="rolled_back")),
        Fetch("page: transactions by kind (deposit)", _url(listing, kind="deposit")),
        Fetch("page: transaction", f"/admin/transactions/{quote(s.qw_id, safe='')}"),
        Fetch("page: players", "/admin/players"),
        Fetch("page: players, search by nickname", _url("/admin/players", q=s.nickname)),
        Fetch("page: player", f"/admin/players/{quote(s.player, safe='')}"),
        Fetch("page: orders", "/admin/orders"),
        Fetch("page: orders by state (declined)", _url("/admin/orders", state="declined")),
        order,
        Fetch("page: partners", "/admin/partners"),
        Fetch("page: holds", "/admin/holds"),
        Fetch("page: reconciliation", "/admin/reconcile"),
        Fetch("page: audit log", "/admin/audit"),
        Fetch("page: audit log by operator", _url("/admin/audit", operator=s.operator)),
        Fetch("page: audit log by action", _url("/admin/audit", action="session.create")),
        Fetch(
            "page: settlement, every partner, one day",
            _url("/admin/settlement", **{"from": day, "to": day}),
        ),
        Fetch(
            f"page: settlement, busiest partner, {SETTLEMENT_DAYS} days",
            _url("/admin/settlement", **busy_month),
        ),
        Fetch(
            f"page: settlement CSV, busiest partner, {SETTLEMENT_DAYS} days",
            _url("/admin/settlement.csv", **busy_month),
        ),
        Fetch("page: sandbox, sandbox partner", sandbox),
        Fetch(
            f"page: sandbox, busiest partner, {SANDBOX_WINDOW}",
            _url(busy_sandbox, window=SANDBOX_WINDOW),
        ),
        Fetch(
            f"page: sandbox report JSON, busiest partner, {SANDBOX_WINDOW}",
            _url(f"{busy_sandbox}/report.json", window=SANDBOX_WINDOW),
        ),
    ]


def operator_api(samples: Samples | None = None) -> list[Fetch]:
    """Every operator API call (``/api/*``, bearer key), as the operator's systems make them."""
    s = samples or Samples()
    faults = f"/api/partners/{quote(s.sandbox_partner, safe='')}/faults"
    start = int(dt.datetime(s.day.year, s.day.month, s.day.day, tzinfo=dt.UTC).timestamp()) * 1000
    busy_report = f"/api/partners/{quote(s.busiest_partner, safe='')}/report"
    return [
        Fetch(
            "api: POST /api/sessions",
            "/api/sessions",
            "POST",
            {"playerId": s.player, "partner": s.busiest_partner},
            api=True,
            status=201,
        ),
        Fetch("api: GET faults (sandbox partner)", faults, api=True),
        Fetch(
            "api: POST faults (sandbox partner)",
            faults,
            "POST",
            SANDBOX_RULE,
            api=True,
            status=201,
            creates=True,
        ),
        Fetch(
            "api: DELETE faults/{id} (sandbox partner)",
            faults + "/{created}",
            "DELETE",
            api=True,
            status=204,
        ),
        Fetch(
            "api: GET report (sandbox partner, last hour)",
            f"/api/partners/{quote(s.sandbox_partner, safe='')}/report",
            api=True,
        ),
        Fetch(
            "api: GET report (busiest partner, one day)",
            _url(busy_report, since=str(start), until=str(start + 86_400_000)),
            api=True,
        ),
    ]


def fetch_names() -> list[str]:
    """The names of every timed HTTP row, pages first (the report's order)."""
    return [f.name for f in pages() + operator_api()]


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    api_key: str


def _sign_in(client: httpx.Client, credentials: Credentials) -> int:
    form = client.get("/admin/login").text
    match = _CSRF.search(form)
    token = match.group(1) if match else ""
    return client.post(
        "/admin/login",
        data={
            "csrf_token": token,
            "username": credentials.username,
            "password": credentials.password,
        },
    ).status_code


def time_pages(
    base_url: str, credentials: Credentials, named: list[Fetch], repeat: int
) -> list[Timing]:
    """Sign in to the console and make each request ``repeat`` times (wall time per response);
    operator API calls carry the API key instead of the session cookie."""
    timings = []
    created: list[str] = []
    # Two clients: the API is called without the console's cookie, as another system would.
    with (
        httpx.Client(base_url=base_url, timeout=60, follow_redirects=False) as console,
        httpx.Client(
            base_url=base_url,
            timeout=60,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {credentials.api_key}"},
        ) as api,
    ):
        signed_in = _sign_in(console, credentials)
        for fetch in named:
            timing = Timing(fetch.name)
            timings.append(timing)
            if fetch.missing:
                timing.skipped = fetch.missing
                continue
            if not fetch.api and signed_in != 303:
                timing.error = f"sign-in answered {signed_in}"
                continue
            client = api if fetch.api else console
            for _ in range(repeat):
                path = fetch.path
                if "{created}" in path:
                    if not created:
                        timing.error = "nothing created to remove"
                        break
                    path = path.replace("{created}", created.pop())
                started = time.perf_counter()
                response = client.request(fetch.method, path, json=fetch.body)
                timing.runs_ms.append((time.perf_counter() - started) * 1000)
                timing.status = response.status_code
                if fetch.creates and response.status_code == fetch.status:
                    created.append(str(response.json()["id"]))
                if timing.runs_ms[-1] > SLOW_S * 1000 or response.status_code != fetch.status:
                    break
            if timing.error is None and timing.status != fetch.status:
                timing.error = f"HTTP {timing.status}"
    return timings


__all__ = [
    "FULL_RECONCILE",
    "INCREMENTAL_RECONCILE",
    "Credentials",
    "Fetch",
    "Reconciled",
    "RecordingDatabase",
    "Samples",
    "Timing",
    "call_names",
    "calls",
    "fetch_names",
    "operator_api",
    "pages",
    "settle",
    "time_calls",
    "time_pages",
    "time_reconcile",
]
