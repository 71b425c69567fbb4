"""The benchmark run: database, server, scenarios, ceiling, correctness — into one ``BenchReport``.

For each target (qwallet on PostgreSQL, optionally qwallet on SQLite and the FastAPI reference)
the server runs as a subprocess on a free loopback port, and for each scenario:

1. saturation: ``repetitions`` closed-loop runs of ``connections`` connections; the median counts;
2. the ceiling: ``pgbench`` on the same SQL functions with the same client count (PostgreSQL);
3. open loop at fractions of the median saturation rate: latency from the intended send time;
4. correctness: every acknowledged withdrawal present once in its acknowledged state, ledger sums
   to zero, no negative balance, ``reconcile`` clean. A run that fails this is void.

The load generator runs in separate processes (spawn), so it does not share the server's GIL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from qwallet.bench import database, pgbench, processes
from qwallet.bench.loadgen import (
    REPLAY_POOL,
    SCENARIOS,
    LoadResult,
    LoadSpec,
    decode_histogram,
    run_load,
)
from qwallet.store.postgres import asyncpg_dsn

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)
FLOW_REQUESTS = {
    "balance": 1.0,
    "withdraw": 1.0,
    "withdraw_confirm": 2.0,
    "withdraw_rollback": 2.0,
    "replay": 1.0,
    "hot_wallet": 1.0,
}
REFERENCE_SCENARIOS = ("withdraw",)
Progress = Callable[[str, float], None]
"""(description, fraction done) — the command draws it with Rich."""


@dataclass
class BenchOptions:
    players: int = 100_000
    workers: int = 2
    connections: int = 32
    duration_s: float = 8.0
    warmup_s: float = 1.0
    settle_max_s: float = 30.0
    """Longest warm-up of a freshly started server (bursts until its rate stops rising)."""
    replay_pool: int = REPLAY_POOL
    repetitions: int = 3
    open_fractions: tuple[float, ...] = (0.25, 0.5, 0.7, 0.9)
    open_duration_s: float = 8.0
    scenarios: tuple[str, ...] = SCENARIOS
    generators: int = 1
    pg_url: str = DEFAULT_PG_URL
    pool_min: int | None = None
    pool_max: int | None = None
    postgres: bool = True
    sqlite: bool = False
    reference: bool = True
    ceiling: bool = True
    seed: int = 1
    max_requests: int = 5_000_000
    label: str = "full"
    server_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def short(cls, **overrides: Any) -> BenchOptions:
        """The CI smoke run: every scenario, small and brief (under two minutes)."""
        base = cls(
            players=5_000,
            connections=16,
            duration_s=1.5,
            warmup_s=0.3,
            settle_max_s=5.0,
            replay_pool=256,
            repetitions=1,
            open_fractions=(0.7,),
            open_duration_s=1.5,
            label="short",
        )
        return replace(base, **overrides)


@dataclass
class Measurement:
    mode: str  # "closed" | "open"
    offered_fps: float | None
    flows_per_s: float
    requests_per_s: float
    requests: int
    errors: int
    latency_ms: dict[str, float]
    cpu_ms_per_request: dict[str, float]
    error_samples: list[str] = field(default_factory=list)


@dataclass
class ScenarioResult:
    scenario: str
    saturation: list[Measurement] = field(default_factory=list)
    open_loop: list[Measurement] = field(default_factory=list)
    ceiling: pgbench.PgbenchResult | None = None
    ceiling_open: pgbench.PgbenchResult | None = None
    """pgbench alone, open loop at the offered rate of the 70 % point (latency floor)."""
    verdict: database.Verdict | None = None
    deadlocks: int = 0

    @property
    def median_fps(self) -> float:
        return statistics.median(m.flows_per_s for m in self.saturation) if self.saturation else 0.0

    @property
    def median_rps(self) -> float:
        return (
            statistics.median(m.requests_per_s for m in self.saturation) if self.saturation else 0.0
        )

    @property
    def median_measurement(self) -> Measurement | None:
        if not self.saturation:
            return None
        ordered = sorted(self.saturation, key=lambda m: m.flows_per_s)
        return ordered[len(ordered) // 2]

    @property
    def errors(self) -> int:
        return sum(m.errors for m in self.saturation + self.open_loop)


@dataclass
class TargetRun:
    target: str  # "qwallet-postgresql" | "qwallet-sqlite" | "fastapi-reference"
    workers: int
    connections: int
    scenarios: list[ScenarioResult] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    failure: str | None = None
    warmup_fps: list[float] = field(default_factory=list)
    """flows/s of each warm-up burst, until the rate stopped rising."""

    def scenario(self, name: str) -> ScenarioResult | None:
        return next((s for s in self.scenarios if s.scenario == name), None)


@dataclass
class BenchReport:
    options: BenchOptions
    machine: dict[str, str]
    versions: dict[str, str]
    database_settings: dict[str, str] = field(default_factory=dict)
    seed_s: float = 0.0
    runs: list[TargetRun] = field(default_factory=list)
    started: str = ""
    elapsed_s: float = 0.0
    commit: str = ""

    def run(self, target: str) -> TargetRun | None:
        return next((r for r in self.runs if r.target == target), None)

    @property
    def ok(self) -> bool:
        return all(
            r.failure is None and all(s.verdict is None or s.verdict.ok for s in r.scenarios)
            for r in self.runs
        )


# -- helpers -------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in ("qwallet", "uvicorn", "starlette", "msgspec", "asyncpg", "uvloop", "httptools"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    binary = pgbench.available()
    if binary:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found["pgbench"] = subprocess.run(  # noqa: S603
                [binary, "--version"], capture_output=True, text=True, check=False, timeout=10
            ).stdout.strip()
    return found


def repository_root() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "qwallet").exists():
            return parent
    return None


def git_commit() -> str:
    root = repository_root()
    if root is None:
        return "unknown"
    try:
        commit = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" (with uncommitted changes)" if dirty else "")


def _percentiles(encoded: list[bytes]) -> dict[str, float]:
    histogram = decode_histogram(b"")
    for item in encoded:
        if item:
            histogram.add(decode_histogram(item))
    if histogram.get_total_count() == 0:
        return {}
    values = {
        "p50": histogram.get_value_at_percentile(50.0),
        "p90": histogram.get_value_at_percentile(90.0),
        "p99": histogram.get_value_at_percentile(99.0),
        "p99.9": histogram.get_value_at_percentile(99.9),
        "max": histogram.get_max_value(),
        "mean": histogram.get_mean_value(),
    }
    return {key: float(value) / 1000.0 for key, value in values.items()}


class _PostgresWatch:
    """CPU of the PostgreSQL processes serving the bench database (backends + auxiliaries)."""

    def __init__(self, bench_db: database.BenchDatabase | None) -> None:
        self._db = bench_db

    def snapshot(self) -> dict[int, float]:
        if self._db is None or self._db.backend != "postgresql":
            return {}
        pids = asyncio.run(self._pids())
        return processes.cpu_seconds([p for p in processes.postgres_processes() if p.pid in pids])

    async def _pids(self) -> set[int]:
        assert self._db is not None
        connection = await asyncpg.connect(asyncpg_dsn(self._db.url), timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE (datname = current_database()"
                " AND pid <> pg_backend_pid()) OR backend_type <> 'client backend'"
            )
        finally:
            await connection.close()
        return {int(row["pid"]) for row in rows}


class _Bench:
    def __init__(self, options: BenchOptions, progress: Progress, workdir: Path) -> None:
        self.options = options
        self.progress = progress
        self.workdir = workdir
        self._tag_counter = 0
        self._load_counter = 0
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=options.generators, mp_context=multiprocessing.get_context("spawn")
        )
        self._steps_done = 0
        self._steps_total = 1

    def close(self, interrupted: bool = False) -> None:
        if interrupted:
            # Load runs in flight would go on to their deadline: end our generator processes.
            generators = list(self._pool._processes.values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in generators:
                with contextlib.suppress(OSError, ValueError):
                    process.terminate()
            for process in generators:
                with contextlib.suppress(OSError, ValueError):
                    process.join(timeout=5)
            return
        self._pool.shutdown(cancel_futures=True)

    def _tag(self, scenario: str) -> str:
        self._tag_counter += 1
        return f"{scenario[:2]}{self._tag_counter:03d}{secrets.token_hex(2)}."

    def _step(self, text: str) -> None:
        self._steps_done += 1
        self.progress(text, min(1.0, self._steps_done / self._steps_total))

    # -- one load run ---------------------------------------------------------------------

    def _load(
        self,
        server: processes.Server,
        bench_db: database.BenchDatabase,
        scenario: str,
        tag: str,
        rate: float | None,
        duration_s: float,
        watch: _PostgresWatch,
    ) -> tuple[Measurement, list[tuple[str, str, str]]]:
        options = self.options
        generators = options.generators
        self._load_counter += 1
        run = self._load_counter
        specs = [
            LoadSpec(
                host="127.0.0.1",
                port=server.port,
                username=bench_db.username,
                password=bench_db.password,
                scenario=scenario,
                players=bench_db.players,
                connections=max(1, options.connections // generators),
                duration_s=duration_s,
                max_requests=options.max_requests // generators,
                warmup_s=options.warmup_s,
                rate=None if rate is None else rate / generators,
                # Unique per load run and generator: mm ids never repeat within a database.
                tag=f"{tag}{run}.{index}.",
                seed=options.seed * 1_000_003 + run * 101 + index,
                replay_pool=options.replay_pool // generators,
            )
            for index in range(generators)
        ]
        server_processes = server.processes()
        server_before = processes.cpu_seconds(server_processes)
        postgres_before = watch.snapshot()
        futures = [self._pool.submit(run_load, spec) for spec in specs]
        results: list[LoadResult] = [
            f.result(timeout=duration_s + options.warmup_s + 300) for f in futures
        ]
        server_cpu = processes.cpu_delta(server_before, processes.cpu_seconds(server_processes))
        postgres_cpu = processes.cpu_delta(postgres_before, watch.snapshot())
        # CPU is measured over warm-up + measurement; spread it over the requests of both.
        elapsed = max(r.elapsed_s for r in results)
        requests = sum(r.requests for r in results)
        flows = sum(r.flows for r in results)
        share = elapsed / (elapsed + options.warmup_s)
        per_request = 1000.0 / max(1, requests)
        measurement = Measurement(
            mode="closed" if rate is None else "open",
            offered_fps=rate,
            flows_per_s=flows / elapsed,
            requests_per_s=requests / elapsed,
            requests=requests,
            errors=sum(r.errors for r in results),
            latency_ms=_percentiles([r.histogram for r in results]),
            cpu_ms_per_request={
                "server": server_cpu * share * per_request,
                "generator": sum(r.cpu_s for r in results) * share * per_request,
                "postgres": postgres_cpu * share * per_request,
            },
            error_samples=[s for r in results for s in r.error_samples][:5],
        )
        acked = [item for r in results for item in r.acked]
        return measurement, acked

    # -- one target ---------------------------------------------------------------------

    def _start_qwallet(self, bench_db: database.BenchDatabase, name: str) -> processes.Server:
        options = self.options
        port = processes.free_port()
        env = dict(os.environ)
        env["QWALLET_DATABASE_URL"] = bench_db.url
        # The load is deliberately far above a real partner's or player's request rate (the hot
        # wallet scenario sends everything to one token): lift the per-process rate limits so
        # the benchmark measures the service, not the limiter.
        env["QWALLET_RATE_LIMIT_PARTNER_RPS"] = "1000000"
        env["QWALLET_RATE_LIMIT_PARTNER_BURST"] = "1000000"
        env["QWALLET_RATE_LIMIT_PLAYER_RPS"] = "1000000"
        env["QWALLET_RATE_LIMIT_PLAYER_BURST"] = "1000000"
        if options.pool_min is not None:
            env["QWALLET_PG_POOL_MIN"] = str(options.pool_min)
        if options.pool_max is not None:
            env["QWALLET_PG_POOL_MAX"] = str(options.pool_max)
        env.update(options.server_env)
        argv = [
            sys.executable,
            "-c",
            "from qwallet.cli import main; main()",
            "serve",
            "--no-demo",
            "--workers",
            str(options.workers),
            "--port",
            str(port),
        ]
        return _ready(
            processes.Server(argv, env, port, self.workdir / f"{name}.log"), options.workers
        )

    def _start_reference(self, bench_db: database.BenchDatabase) -> processes.Server | None:
        root = repository_root()
        app_dir = root / "bench" / "fastapi_reference" if root else None
        if app_dir is None or not (app_dir / "app.py").exists():
            return None
        port = processes.free_port()
        env = dict(os.environ)
        env["REFERENCE_DATABASE_URL"] = bench_db.url
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(app_dir),
            "--workers",
            str(self.options.workers),
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        server = processes.Server(argv, env, port, self.workdir / "reference.log")
        return _ready(server, self.options.workers)

    def _settle(
        self,
        server: processes.Server,
        bench_db: database.BenchDatabase,
        scenario: str,
        watch: _PostgresWatch,
    ) -> list[float]:
        """Warm a fresh server up until its rate stops rising: credential caches (one scrypt per
        worker), connection pools, prepared statements, ORM compile caches (the reference's).

        A fixed warm-up is not enough on a loaded machine: a server still filling its pool when
        the window opens is measured at a fraction of its rate (or at zero)."""
        rates: list[float] = []
        started = time.monotonic()
        tag = self._tag("warm")
        while True:
            measurement, _ = self._load(server, bench_db, scenario, tag, None, 1.0, watch)
            rates.append(measurement.flows_per_s)
            previous = rates[-2] if len(rates) > 1 else 0.0
            if previous > 0 and measurement.flows_per_s <= previous * 1.15:
                return rates
            if time.monotonic() - started >= self.options.settle_max_s:
                return rates

    def _pgbench(
        self,
        scenario: str,
        bench_db: database.BenchDatabase,
        duration_s: float,
        rate: float | None = None,
    ) -> pgbench.PgbenchResult:
        url = urlsplit(bench_db.url)
        return pgbench.run(
            scenario,
            host=url.hostname or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "postgres",
            database=bench_db.name,
            clients=self.options.connections,
            duration_s=max(1, round(duration_s)),
            players=bench_db.players,
            partner_id=bench_db.partner_id,
            rate=rate,
        )

    def _run_target(
        self,
        target: str,
        bench_db: database.BenchDatabase,
        server: processes.Server,
        scenarios: tuple[str, ...],
        *,
        ceiling: bool,
    ) -> TargetRun:
        options = self.options
        run = TargetRun(target, options.workers, options.connections)
        watch = _PostgresWatch(bench_db)
        run.warmup_fps = self._settle(server, bench_db, scenarios[0], watch)
        for scenario in scenarios:
            result = ScenarioResult(scenario)
            tag = self._tag(scenario)
            acked: list[tuple[str, str, str]] = []
            deadlocks_before = asyncio.run(database.deadlocks(bench_db))
            for repetition in range(options.repetitions):
                measurement, acks = self._load(
                    server, bench_db, scenario, tag, None, options.duration_s, watch
                )
                result.saturation.append(measurement)
                acked += acks
                self._step(
                    f"{target} {scenario} saturation {repetition + 1}/{options.repetitions}:"
                    f" {measurement.flows_per_s:,.0f} flows/s"
                )
            if ceiling and bench_db.backend == "postgresql":
                result.ceiling = self._pgbench(scenario, bench_db, options.duration_s)
                self._step(f"{target} {scenario} pgbench: {result.ceiling.tps:,.0f} tps")
            for fraction in options.open_fractions:
                rate = max(1.0, result.median_fps * fraction)
                measurement, acks = self._load(
                    server, bench_db, scenario, tag, rate, options.open_duration_s, watch
                )
                result.open_loop.append(measurement)
                acked += acks
                self._step(
                    f"{target} {scenario} open loop {fraction:.0%}:"
                    f" p99 {measurement.latency_ms.get('p99', 0):.1f} ms"
                )
                if ceiling and bench_db.backend == "postgresql" and abs(fraction - 0.7) < 0.01:
                    # The database alone at the same offered rate: the floor of the tail.
                    result.ceiling_open = self._pgbench(
                        scenario, bench_db, options.open_duration_s, rate=rate
                    )
                    floor = result.ceiling_open.percentiles_ms.get("p99", 0.0)
                    self._step(f"{target} {scenario} pgbench open loop 70%: p99 {floor:.1f} ms")
            result.deadlocks = asyncio.run(database.deadlocks(bench_db)) - deadlocks_before
            result.verdict = asyncio.run(database.verify(bench_db, acked, tag, full_reconcile=True))
            if result.errors:
                result.verdict.problems.append(f"{result.errors} failed requests")
            if result.deadlocks:
                result.verdict.problems.append(f"{result.deadlocks} deadlocks")
            self._step(f"{target} {scenario} verified: {'ok' if result.verdict.ok else 'VOID'}")
            run.scenarios.append(result)
        run.peak_rss_mb = [processes.peak_rss_mb(p) for p in server.workers()]
        return run

    # -- the whole benchmark ------------------------------------------------------------

    def _count_steps(self) -> int:
        options = self.options
        per_scenario = options.repetitions + len(options.open_fractions) + 1
        total = 0
        if options.postgres:
            ceiling_steps = int(options.ceiling) * (1 + int(0.7 in options.open_fractions))
            total += len(options.scenarios) * (per_scenario + ceiling_steps)
            if options.reference:
                total += len(REFERENCE_SCENARIOS) * per_scenario
        if options.sqlite:
            total += len(options.scenarios) * per_scenario
        return max(1, total + 3)

    def run(self) -> BenchReport:
        options = self.options
        started = time.monotonic()
        report = BenchReport(
            options,
            processes.machine(),
            _versions(),
            started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            commit=git_commit(),
        )
        self._steps_total = self._count_steps()
        if options.postgres:
            self._postgres(report)
        if options.sqlite:
            self._sqlite(report)
        report.elapsed_s = time.monotonic() - started
        return report

    @contextlib.contextmanager
    def _server(self, start: Callable[[], processes.Server | None]) -> Iterator[Any]:
        server = start()
        try:
            yield server
        finally:
            if server is not None:
                server.stop()

    def _postgres(self, report: BenchReport) -> None:
        options = self.options
        bench_db = asyncio.run(database.create_postgres(options.pg_url))
        try:
            seeded = time.monotonic()
            asyncio.run(database.seed(bench_db, options.players, int(time.time() * 1000)))
            report.seed_s = time.monotonic() - seeded
            report.database_settings = dict(bench_db.settings)
            self._step(f"seeded {options.players:,} wallets in {report.seed_s:.1f} s")
            if bench_db.settings.get("synchronous_commit") != "on":
                raise RuntimeError(
                    "synchronous_commit is not on: figures would not be durable commits"
                )
            run = TargetRun("qwallet-postgresql", options.workers, options.connections)
            try:
                with self._server(lambda: self._start_qwallet(bench_db, "qwallet-pg")) as server:
                    run = self._run_target(
                        run.target, bench_db, server, options.scenarios, ceiling=options.ceiling
                    )
            except Exception as error:
                run.failure = repr(error)
            report.runs.append(run)
            if options.reference:
                reference = TargetRun("fastapi-reference", options.workers, options.connections)
                try:
                    with self._server(lambda: self._start_reference(bench_db)) as server:
                        if server is None:
                            reference.failure = "bench/fastapi_reference not found"
                        else:
                            reference = self._run_target(
                                reference.target,
                                bench_db,
                                server,
                                REFERENCE_SCENARIOS,
                                ceiling=False,
                            )
                except Exception as error:
                    reference.failure = repr(error)
                report.runs.append(reference)
        finally:
            asyncio.run(database.drop_postgres(options.pg_url, bench_db))

    def _sqlite(self, report: BenchReport) -> None:
        options = self.options
        directory = Path(tempfile.mkdtemp(prefix="qwallet-bench-sqlite-"))
        bench_db = database.BenchDatabase(
            f"sqlite:///{directory / 'bench.db'}", "sqlite", "bench.db"
        )
        asyncio.run(database.seed(bench_db, options.players, int(time.time() * 1000)))
        report.database_settings.update(
            {f"sqlite_{key}": value for key, value in bench_db.settings.items()}
        )
        run = TargetRun("qwallet-sqlite", options.workers, options.connections)
        try:
            with self._server(lambda: self._start_qwallet(bench_db, "qwallet-sqlite")) as server:
                run = self._run_target(
                    run.target, bench_db, server, options.scenarios, ceiling=False
                )
                text = server.tail()
                if "database is locked" in text:
                    run.failure = "the server logged 'database is locked'"
        except Exception as error:
            run.failure = repr(error)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        report.runs.append(run)


def _ready(server: processes.Server, workers: int) -> processes.Server:
    """Wait for a started server; stop it if it never gets ready (or the wait is interrupted)."""
    try:
        server.wait_ready(workers=workers)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM, like Ctrl-C, raises ``KeyboardInterrupt`` in the benchmark, so that every
    ``finally`` runs: the servers it started are stopped, its database dropped, its generator
    processes ended. Further signals are ignored while that cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in wanted}

    def interrupted(number: int, _frame: object) -> None:
        for other in wanted:
            signal.signal(other, signal.SIG_IGN)
        raise KeyboardInterrupt(f"interrupted by {signal.Signals(number).name}")

    for number in wanted:
        signal.signal(number, interrupted)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_bench(options: BenchOptions, progress: Progress | None = None) -> BenchReport:
    """Run the whole benchmark; the database it creates is dropped afterwards.

    Interrupted (Ctrl-C, SIGTERM), it stops what it started and drops its database before
    ``KeyboardInterrupt`` propagates."""
    with _signals_interrupt():
        workdir = Path(tempfile.mkdtemp(prefix="qwallet-bench-"))
        bench = _Bench(options, progress or (lambda _text, _done: None), workdir)
        interrupted = True
        try:
            report = bench.run()
            interrupted = False
            return report
        finally:
            bench.close(interrupted)
            shutil.rmtree(workdir, ignore_errors=True)


__all__ = [
    "BenchOptions",
    "BenchReport",
    "Measurement",
    "ScenarioResult",
    "TargetRun",
    "run_bench",
]
