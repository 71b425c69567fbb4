"""``qwallet bench --stored N``: the same scenarios on an empty and on a grown database, one run.

1. Refuse before anything is written if the disk PostgreSQL writes to has too little free space.
2. Create the bench database, seed the wallets, start ``qwallet serve``.
3. Phase *empty*: ``qwallet reconcile --full`` (which leaves a checkpoint); per scenario the
   closed-loop saturation, the pgbench ceiling (with the WAL it wrote), and an open loop at 70 %
   of this phase's saturation rate; then the table sizes, the operator pages (HTTP) and queries
   (with their plans), and ``qwallet reconcile``, which reads only what the scenarios wrote
   after that checkpoint.
4. Preload ``N`` completed transactions (``qwallet.store.bulk_load``), VACUUM ANALYZE, CHECKPOINT.
5. Phase *loaded*: the same (``--full`` now proves all of history), the open loop at the *same
   offered rate* as in the empty phase, so the two p99 compare like for like.

The database is dropped when the run ends, however it ends (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from qwallet.bench import database, operator_queries, processes
from qwallet.bench.runner import (
    FLOW_REQUESTS,
    BenchOptions,
    Measurement,
    _Bench,
    _PostgresWatch,
    _signals_interrupt,
    git_commit,
)
from qwallet.service import api_keys, operators, partners, reconcile
from qwallet.settings import Settings
from qwallet.store import bulk_load
from qwallet.store.factory import open_store
from qwallet.store.postgres import PostgresStore, asyncpg_dsn

GROWTH_SCENARIOS = ("withdraw", "withdraw_confirm")
EXTRA_PARTNERS = 3
OPEN_FRACTION = 0.7
UNTIMED_RECONCILE_S = 3600.0
UNTIMED_ROW = "reconcile without the statement timeout"
SANDBOX_PARTNER = f"{database.PARTNER}-sandbox"
"""A sandbox partner without traffic or preloaded history: the fault-rule API calls and the
sandbox page need one (rules are refused for a production partner)."""
HTTP_REPEAT, HTTP_REPEAT_SHORT = 10, 3
"""Requests per page or API row and phase (a row slower than ``SLOW_S`` gets one)."""
Progress = Callable[[str, float], None]


class NotEnoughDisk(RuntimeError):
    """The preload would not fit on the disk PostgreSQL writes to."""


@dataclass
class ScenarioGrowth:
    scenario: str
    saturation: list[Measurement] = field(default_factory=list)
    pgbench_tps: float = 0.0
    pgbench_ok: bool = False
    wal_bytes_per_flow: float | None = None
    other_commits: int = 0
    """Commits in other databases of the cluster while the WAL was measured (the WAL position is
    cluster-wide; this says how quiet the cluster was)."""
    open_loop: Measurement | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def median_fps(self) -> float:
        return statistics.median(m.flows_per_s for m in self.saturation) if self.saturation else 0.0

    @property
    def errors(self) -> int:
        extra = [self.open_loop] if self.open_loop else []
        return sum(m.errors for m in self.saturation + extra)


@dataclass
class Phase:
    label: str  # "empty" | "loaded"
    transactions: int = 0
    scenarios: dict[str, ScenarioGrowth] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    """table → (table bytes incl. TOAST, index bytes)."""
    queries: list[operator_queries.Timing] = field(default_factory=list)
    pages: list[operator_queries.Timing] = field(default_factory=list)
    """The console pages and the operator API calls, over HTTP (``fetch_names``)."""
    reconcile: operator_queries.Timing | None = None
    """``qwallet reconcile --full`` before the scenarios (it writes the phase's checkpoint)."""
    reconcile_ok: bool | None = None
    untimed_reconcile: operator_queries.Timing | None = None
    """The same checks without the statement timeout, when the operator's run hit it."""
    incremental: operator_queries.Reconciled | None = None
    """``qwallet reconcile`` after the scenarios: the entries since the ``--full`` checkpoint."""


@dataclass
class GrowthReport:
    options: BenchOptions
    stored: int
    command: str
    machine: dict[str, str]
    started: str = ""
    commit: str = ""
    disk: bulk_load.DiskCheck | None = None
    preload: bulk_load.PreloadResult | None = None
    phases: list[Phase] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    database: str = ""
    """Name of the bench database (dropped when the run ends)."""

    def phase(self, label: str) -> Phase | None:
        return next((p for p in self.phases if p.label == label), None)

    @property
    def ok(self) -> bool:
        """No failed request, every acknowledged transaction found, the preload reconciled."""
        return all(
            not s.problems for phase in self.phases for s in phase.scenarios.values()
        ) and all(
            p.reconcile_ok is not False and (p.incremental is None or p.incremental.ok is not False)
            for p in self.phases
        )


async def _wal_lsn_and_commits(url: str, name: str) -> tuple[int, int]:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        lsn = await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        others = await connection.fetchval(
            "SELECT COALESCE(SUM(xact_commit), 0) FROM pg_stat_database"
            " WHERE datname IS DISTINCT FROM $1",
            name,
        )
    finally:
        await connection.close()
    return int(lsn), int(others)


async def _analyze(url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def _sizes_and_count(url: str) -> tuple[dict[str, tuple[int, int]], int]:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        rows = await connection.fetch(
            # A partitioned table (migration 0011) holds nothing itself: sum its partitions
            # (pg_partition_tree lists none for a plain table).
            "SELECT c.relname, COALESCE(t.heap, pg_table_size(c.oid)) AS heap,"
            " COALESCE(t.indexes, pg_indexes_size(c.oid)) AS indexes"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN LATERAL (SELECT SUM(pg_table_size(p.relid)) AS heap,"
            " SUM(pg_indexes_size(p.relid)) AS indexes FROM pg_partition_tree(c.oid) p) t"
            " ON c.relkind = 'p'"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
            " ORDER BY COALESCE(t.heap, pg_table_size(c.oid))"
            " + COALESCE(t.indexes, pg_indexes_size(c.oid)) DESC"
        )
        count = await connection.fetchval("SELECT COUNT(*) FROM transactions")
    finally:
        await connection.close()
    return {str(r["relname"]): (int(r["heap"]), int(r["indexes"])) for r in rows}, int(count)


async def _acked_problems(
    bench_db: database.BenchDatabase, acked: list[tuple[str, str, str]]
) -> list[str]:
    """Every acknowledged withdrawal stored once, in its acknowledged state (by the unique key
    of ``transaction_keys``, then the row by its partition key, not by a scan: the check must
    stay cheap on a grown database)."""
    connection = await asyncpg.connect(asyncpg_dsn(bench_db.url), timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT t.mm_transaction_id, t.qw_transaction_id::text AS qw, t.state"
            " FROM transaction_keys k JOIN transactions t"
            " ON t.qw_transaction_id = k.qw_transaction_id AND t.created_at_ms = k.created_at_ms"
            " WHERE k.partner_id = $1 AND k.kind = 'withdrawal'"
            " AND k.mm_transaction_id = ANY($2)",
            bench_db.partner_id,
            [mm for mm, _, _ in acked],
        )
    finally:
        await connection.close()
    stored = {str(r["mm_transaction_id"]): (str(r["qw"]), str(r["state"])) for r in rows}
    missing = sum(1 for mm, qw, _ in acked if stored.get(mm, ("", ""))[0] != qw)
    wrong = sum(
        1 for mm, qw, state in acked if stored.get(mm, ("", ""))[0] == qw and stored[mm][1] != state
    )
    problems = []
    if missing:
        problems.append(f"{missing} acknowledged transactions missing")
    if wrong:
        problems.append(f"{wrong} acknowledged transactions in the wrong state")
    return problems


_MIDDLE_TRANSACTION = """
SELECT t.qw_transaction_id::text AS qw, t.mm_transaction_id AS mm, t.player_id::text AS player,
       t.created_at_ms, p.nickname
  FROM transactions t JOIN players p ON p.id = t.player_id
 WHERE t.created_at_ms >= (SELECT (MIN(created_at_ms) + MAX(created_at_ms)) / 2 FROM transactions)
 ORDER BY t.created_at_ms LIMIT 1
"""
_MIDDLE_ORDER = """
SELECT id::text AS id FROM payment_orders
 WHERE created_at_ms >= (SELECT (MIN(created_at_ms) + MAX(created_at_ms)) / 2 FROM payment_orders)
 ORDER BY created_at_ms LIMIT 1
"""


async def _samples(
    bench_db: database.BenchDatabase, deep_cursor: str | None, operator: str
) -> operator_queries.Samples:
    """What the timed pages open: the transaction in the middle of the stored time range (by
    the time index: MIN, MAX and one step, cheap at any size), its player and its day, the
    order in the middle of the orders, the bench partner (the preload's share plus every
    scenario's writes: the most traffic). Each phase takes its own, so every page opens
    something that exists."""
    connection = await asyncpg.connect(asyncpg_dsn(bench_db.url), timeout=10)
    try:
        middle = await connection.fetchrow(_MIDDLE_TRANSACTION)
        order = await connection.fetchrow(_MIDDLE_ORDER)
    finally:
        await connection.close()
    if middle is None:
        return operator_queries.Samples(deep_cursor=deep_cursor, operator=operator)
    at = dt.datetime.fromtimestamp(int(middle["created_at_ms"]) / 1000, dt.UTC)
    return operator_queries.Samples(
        mm_id=str(middle["mm"]),
        qw_id=str(middle["qw"]),
        player=str(middle["player"]),
        nickname=str(middle["nickname"]),
        day=at.date(),
        order_id=str(order["id"]) if order is not None else None,
        deep_cursor=deep_cursor,
        busiest_partner=database.PARTNER,
        sandbox_partner=SANDBOX_PARTNER,
        operator=operator,
    )


class _Growth:
    def __init__(
        self,
        bench: _Bench,
        options: BenchOptions,
        stored: int,
        report: GrowthReport,
        rebuild_indexes: bool,
        untimed_reconcile: bool,
        preload_budget_s: float | None,
    ) -> None:
        self.bench, self.options, self.stored, self.report = bench, options, stored, report
        self.rebuild_indexes = rebuild_indexes
        self.untimed_reconcile = untimed_reconcile
        self.preload_budget_s = preload_budget_s
        self.operator = ("growth-" + secrets.token_hex(3), "")
        self.api_key = ""

    def _scenario(
        self,
        server: processes.Server,
        bench_db: database.BenchDatabase,
        scenario: str,
        open_rate: float | None,
        watch: _PostgresWatch,
    ) -> ScenarioGrowth:
        options, bench = self.options, self.bench
        result = ScenarioGrowth(scenario)
        tag = bench._tag(scenario)
        acked: list[tuple[str, str, str]] = []
        for _ in range(options.repetitions):
            measurement, acks = bench._load(
                server, bench_db, scenario, tag, None, options.duration_s, watch
            )
            result.saturation.append(measurement)
            acked += acks
        before, others_before = asyncio.run(_wal_lsn_and_commits(options.pg_url, bench_db.name))
        ceiling = bench._pgbench(scenario, bench_db, options.duration_s)
        after, others_after = asyncio.run(_wal_lsn_and_commits(options.pg_url, bench_db.name))
        result.pgbench_tps, result.pgbench_ok = ceiling.tps, ceiling.ok
        flows = ceiling.tps * max(1, round(options.duration_s))
        if ceiling.ok and flows > 0:
            result.wal_bytes_per_flow = (after - before) / flows
        # A database dropped meanwhile takes its counters with it: never below zero.
        result.other_commits = max(0, others_after - others_before)
        rate = open_rate if open_rate is not None else result.median_fps * OPEN_FRACTION
        measurement, acks = bench._load(
            server, bench_db, scenario, tag, max(1.0, rate), options.open_duration_s, watch
        )
        result.open_loop = measurement
        acked += acks
        result.problems = asyncio.run(_acked_problems(bench_db, acked))
        if result.errors:
            result.problems.append(f"{result.errors} failed requests")
        if not ceiling.ok:
            result.problems.append(f"pgbench failed: {ceiling.detail[:200]}")
        return result

    def phase(
        self,
        label: str,
        server: processes.Server,
        bench_db: database.BenchDatabase,
        empty: Phase | None,
    ) -> Phase:
        options = self.options
        phase = Phase(label)
        watch = _PostgresWatch(bench_db)
        # The full proof first: it leaves the checkpoint that the incremental run after the
        # scenarios starts from, so that run reads this phase's writes and nothing older.
        full = asyncio.run(self._reconcile(bench_db, full=True))
        phase.reconcile, phase.reconcile_ok = full.timing, full.ok
        if phase.reconcile_ok is None and self.untimed_reconcile:
            # The operator's run failed (the statement timeout): run the same checks without
            # it, to prove the data consistent and to say how long a full pass really takes.
            phase.untimed_reconcile, phase.reconcile_ok = asyncio.run(
                self._untimed_reconcile(bench_db)
            )
        self.bench._step(f"{label}: reconcile --full {_cell(phase.reconcile)}")
        for scenario in options.scenarios:
            rate = None
            if empty is not None and scenario in empty.scenarios:
                rate = empty.scenarios[scenario].median_fps * OPEN_FRACTION
            result = self._scenario(server, bench_db, scenario, rate, watch)
            phase.scenarios[scenario] = result
            self.bench._step(
                f"{label}: {scenario} {result.median_fps:,.0f} flows/s, pgbench"
                f" {result.pgbench_tps:,.0f} tps"
                + (f", problems: {'; '.join(result.problems)}" if result.problems else "")
            )
        # Statistics as autovacuum would have them by now: the scenarios just wrote tens of
        # thousands of pending withdrawals, and stale statistics would time a plan nobody gets.
        asyncio.run(_analyze(bench_db.url))
        phase.sizes, phase.transactions = asyncio.run(_sizes_and_count(bench_db.url))
        repeat = 3 if options.label == "short" else 5
        deep_cursor = asyncio.run(self._deep_cursor(bench_db))
        samples = asyncio.run(_samples(bench_db, deep_cursor, self.operator[0]))
        asyncio.run(self._settle(bench_db, samples))
        phase.pages = operator_queries.time_pages(
            f"http://127.0.0.1:{server.port}",
            operator_queries.Credentials(*self.operator, self.api_key),
            operator_queries.pages(samples) + operator_queries.operator_api(samples),
            HTTP_REPEAT_SHORT if options.label == "short" else HTTP_REPEAT,
        )
        phase.queries = asyncio.run(self._queries(bench_db, samples, repeat))
        if full.ok is True:
            phase.incremental = asyncio.run(self._reconcile(bench_db, full=False))
        else:
            # No checkpoint from this phase: the run would read everything since the previous
            # one (the whole preload), which is not the cost this row measures.
            phase.incremental = operator_queries.Reconciled(
                operator_queries.Timing(
                    operator_queries.INCREMENTAL_RECONCILE,
                    skipped="the phase's reconcile --full wrote no checkpoint",
                ),
                full=False,
            )
        self.bench._step(
            f"{label}: operator pages and queries timed; reconcile since the checkpoint"
            f" {_cell(phase.incremental.timing)} ({phase.incremental.entries:,} entries)"
        )
        return phase

    async def _deep_cursor(self, bench_db: database.BenchDatabase) -> str | None:
        settings = Settings(database_url=bench_db.url, pg_pool_min=1, pg_pool_max=2)
        store = await open_store(settings)
        try:
            return await operator_queries.cursor_of_page(store, operator_queries.PAGE_DEEP)
        finally:
            await store.close()

    async def _settle(
        self, bench_db: database.BenchDatabase, samples: operator_queries.Samples
    ) -> None:
        settings = Settings(database_url=bench_db.url, pg_pool_min=1, pg_pool_max=2)
        store = await open_store(settings)
        try:
            await operator_queries.settle(store, samples)
        finally:
            await store.close()

    async def _queries(
        self, bench_db: database.BenchDatabase, samples: operator_queries.Samples, repeat: int
    ) -> list[operator_queries.Timing]:
        settings = Settings(database_url=bench_db.url, pg_pool_min=1, pg_pool_max=2)
        store = await open_store(settings)
        try:
            named = operator_queries.calls(settings, samples)
            return await operator_queries.time_calls(store, named, repeat, explain=True)
        finally:
            await store.close()

    async def _reconcile(
        self, bench_db: database.BenchDatabase, *, full: bool
    ) -> operator_queries.Reconciled:
        settings = Settings(database_url=bench_db.url, pg_pool_min=1, pg_pool_max=2)
        store = await open_store(settings)
        try:
            return await operator_queries.time_reconcile(store, full=full)
        finally:
            await store.close()

    async def _untimed_reconcile(
        self, bench_db: database.BenchDatabase
    ) -> tuple[operator_queries.Timing, bool | None]:
        store = await PostgresStore.open(
            bench_db.url, pool_min=1, pool_max=1, command_timeout_s=UNTIMED_RECONCILE_S
        )
        # Reading only: the checkpoint the incremental run needs is written by a ``--full``
        # that completes; this one only proves and times.
        timing = operator_queries.Timing(UNTIMED_ROW)
        started = time.perf_counter()
        try:
            report = await reconcile.reconcile(store)
        except Exception as error:
            seconds = time.perf_counter() - started
            timing.error = f"fails: {type(error).__name__} after {seconds:.1f} s"
            return timing, None
        finally:
            await store.close()
        timing.runs_ms.append((time.perf_counter() - started) * 1000)
        return timing, report.ok

    async def prepare(self, bench_db: database.BenchDatabase, now_ms: int) -> list[int]:
        """The extra partners the preload spreads over, the sandbox partner, and the operator
        (and API key) who opens the pages and calls the operator API."""
        store = await open_store(Settings(database_url=bench_db.url, pg_pool_min=1, pg_pool_max=2))
        try:
            ids = [bench_db.partner_id]
            for index in range(EXTRA_PARTNERS):
                name = f"{database.PARTNER}-{index + 2}"
                await partners.create_partner(store, name, now_ms)
                async with store.transaction() as tx:
                    row = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", name)
                assert row is not None
                ids.append(int(row["id"]))
            # Not in ``ids``: the preload leaves it without history, as a sandbox partner is.
            await partners.create_partner(store, SANDBOX_PARTNER, now_ms, sandbox=True)
            issued = await operators.create_operator(store, self.operator[0], now_ms)
            self.operator = (issued.username, issued.password)
            self.api_key = await api_keys.create_api_key(store, self.operator[0], now_ms)
        finally:
            await store.close()
        return ids

    def run(self) -> None:
        options, report = self.options, self.report
        disk = asyncio.run(bulk_load.check_disk(options.pg_url, self.stored))
        report.disk = disk
        self.bench._step(f"preload of {self.stored:,} transactions {disk.describe()}")
        if not disk.ok:
            raise NotEnoughDisk(
                f"refusing to preload {self.stored:,} transactions: " + disk.describe()
            )
        bench_db = asyncio.run(database.create_postgres(options.pg_url))
        report.database = bench_db.name
        try:
            now_ms = int(time.time() * 1000)
            asyncio.run(database.seed(bench_db, options.players, now_ms))
            report.settings = dict(bench_db.settings)
            partner_ids = asyncio.run(self.prepare(bench_db, now_ms))
            self.bench._step(f"seeded {options.players:,} wallets")
            server = self.bench._start_qwallet(bench_db, "qwallet-growth")
            try:
                self.bench._settle(server, bench_db, options.scenarios[0], _PostgresWatch(bench_db))
                empty = self.phase("empty", server, bench_db, None)
                report.phases.append(empty)

                def shown(done: int, total: int) -> None:
                    self.bench.progress(
                        f"preloading: {done:,} of {total:,} transactions", done / max(1, total)
                    )

                report.preload = asyncio.run(
                    bulk_load.preload(
                        bench_db,
                        self.stored,
                        partner_ids,
                        now_ms,
                        rebuild_indexes=self.rebuild_indexes,
                        budget_s=self.preload_budget_s,
                        progress=shown,
                    )
                )
                self.stored = report.preload.transactions  # fewer if the budget ran out
                self.bench._step(
                    f"preloaded {self.stored:,} of {report.stored:,} transactions in"
                    f" {report.preload.elapsed_s:.0f} s"
                    f" (indexes {report.preload.index_s:.0f} s,"
                    f" VACUUM ANALYZE {report.preload.vacuum_s:.0f} s)"
                )
                report.phases.append(self.phase("loaded", server, bench_db, empty))
            finally:
                server.stop()
        finally:
            asyncio.run(database.drop_postgres(options.pg_url, bench_db))


def run_growth(
    options: BenchOptions,
    stored: int,
    command: str,
    progress: Progress | None = None,
    *,
    rebuild_indexes: bool = True,
    untimed_reconcile: bool = True,
    preload_budget_s: float | None = None,
) -> GrowthReport:
    """Run the growth benchmark; its database is dropped afterwards, however the run ends."""
    if stored < 1:
        raise ValueError("--stored must be at least 1")
    unknown = [s for s in options.scenarios if s not in FLOW_REQUESTS]
    if unknown:
        raise ValueError(f"scenarios not measurable for growth: {', '.join(unknown)}")
    with _signals_interrupt():
        workdir = Path(tempfile.mkdtemp(prefix="qwallet-bench-growth-"))
        bench = _Bench(options, progress or (lambda _text, _done: None), workdir)
        bench._steps_total = 2 * (len(options.scenarios) + 1) + 3
        report = GrowthReport(
            options,
            stored,
            command,
            processes.machine(),
            started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            commit=git_commit(),
        )
        started = time.monotonic()
        interrupted = True
        try:
            _Growth(
                bench, options, stored, report, rebuild_indexes, untimed_reconcile, preload_budget_s
            ).run()
            interrupted = False
        finally:
            bench.close(interrupted)
            shutil.rmtree(workdir, ignore_errors=True)
        report.elapsed_s = time.monotonic() - started
        return report


def summary(report: GrowthReport) -> dict[str, Any]:
    """The ``--json`` summary of a growth run."""
    return {
        "ok": report.ok,
        "stored": report.stored,
        "database": report.database,
        "phases": {
            phase.label: {
                "transactions": phase.transactions,
                "reconcileOk": phase.reconcile_ok,
                "incrementalOk": phase.incremental.ok if phase.incremental else None,
                "incrementalEntries": phase.incremental.entries if phase.incremental else None,
                "incrementalStatements": {
                    t.name: {"calls": t.calls, "ms": round(t.ms, 1)}
                    for t in (phase.incremental.statements if phase.incremental else [])
                },
                "http": {
                    t.name: {
                        "medianMs": None if t.median_ms is None else round(t.median_ms, 1),
                        "p99Ms": None if t.p99_ms is None else round(t.p99_ms, 1),
                        "runs": len(t.runs_ms),
                        "status": t.status,
                        "error": t.error,
                        "skipped": t.skipped,
                    }
                    for t in phase.pages
                },
                "scenarios": {
                    name: {
                        "flowsPerS": round(s.median_fps, 1),
                        "pgbenchTps": round(s.pgbench_tps, 1),
                        "problems": s.problems,
                    }
                    for name, s in phase.scenarios.items()
                },
            }
            for phase in report.phases
        },
    }


def _cell(timing: operator_queries.Timing) -> str:
    if timing.skipped:
        return f"not run: {timing.skipped}"
    return timing.error or f"{timing.median_ms or 0:,.0f} ms"


__all__ = ["GROWTH_SCENARIOS", "GrowthReport", "NotEnoughDisk", "Phase", "run_growth", "summary"]
