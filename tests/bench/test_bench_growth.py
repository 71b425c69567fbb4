"""``qwallet bench --stored N`` at CI size: the preloaded database passes ``reconcile --full``,
the incremental ``qwallet reconcile`` reads only what was written after its checkpoint, the
Growth section has every row, the database is dropped afterwards, and a preload that would not
fit on the disk is refused before anything is created.

The large-N figures come from the benchmark itself (docs/benchmarks.md), not from this test.
Needs the ``bench`` extra and the PostgreSQL server; skipped with the reason when absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

pytest.importorskip("hdrh", reason="the bench extra is not installed (pip install -e '.[bench]')")
pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")

from qwallet.bench import growth_report
from qwallet.bench.growth import GROWTH_SCENARIOS, HTTP_REPEAT_SHORT
from qwallet.bench.operator_queries import call_names, fetch_names
from qwallet.store import bulk_load
from qwallet.store.postgres import asyncpg_dsn
from tests.conftest import PG_URL, require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

QWALLET = str(Path(sys.executable).parent / "qwallet")
STORED = 20_000


async def _bench_databases() -> set[str]:
    connection = await asyncpg.connect(asyncpg_dsn(PG_URL), timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'qwallet_bench_%'"
        )
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QWALLET, "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "QWALLET_BENCH_PG_URL": PG_URL, "COLUMNS": "200"},
    )


def test_growth_run_reconciles_and_reports_every_row(tmp_path: Path) -> None:
    require_postgres()
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nkept\n\n## Method\n\nkept too\n", encoding="utf-8")
    completed = _bench(
        *("--stored", str(STORED), "--short", "--duration", "1", "--open-duration", "1"),
        *("--json", "--output", str(output)),
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True, summary
    empty, loaded = summary["phases"]["empty"], summary["phases"]["loaded"]
    # The preload passes reconcile --full, and the scenarios' writes pass the incremental run.
    assert empty["reconcileOk"] is True and loaded["reconcileOk"] is True, summary
    assert empty["incrementalOk"] is True and loaded["incrementalOk"] is True, summary
    assert loaded["transactions"] >= empty["transactions"] + STORED, summary
    # `qwallet reconcile` after the loaded scenarios reads what they wrote after the --full
    # checkpoint (at most four entries per transaction), not the preloaded history.
    written = loaded["transactions"] - empty["transactions"] - STORED
    assert 0 < loaded["incrementalEntries"] <= 4 * written, summary
    for phase in (empty, loaded):
        assert list(phase["scenarios"]) == list(GROWTH_SCENARIOS)
        for name, scenario in phase["scenarios"].items():
            assert scenario["flowsPerS"] > 0 and scenario["pgbenchTps"] > 0, (name, scenario)
            assert scenario["problems"] == [], (name, scenario)
    # Every console page and operator API call answered as it should, in both phases (the
    # order page in the empty phase excepted: no order is stored there to open).
    for label, phase in (("empty", empty), ("loaded", loaded)):
        assert list(phase["http"]) == fetch_names(), (label, list(phase["http"]))
        for name, row in phase["http"].items():
            if label == "empty" and name == "page: order":
                assert row["skipped"] == "no order stored" and row["runs"] == 0, row
                continue
            assert row["error"] is None and row["skipped"] is None, (label, name, row)
            assert row["runs"] == HTTP_REPEAT_SHORT or row["medianMs"] > 2000, (label, name, row)
            assert row["medianMs"] > 0 and row["p99Ms"] >= row["medianMs"], (label, name, row)
    assert summary["database"] not in asyncio.run(_bench_databases()), "database was kept"

    text = output.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nkept\n") and "## Method\n\nkept too" in text
    section = text[text.index("## Growth") : text.index("## Method")]
    assert f"`qwallet bench --stored {STORED} --short" in section  # the command that made it
    rows = [row for scenario in GROWTH_SCENARIOS for row in growth_report.scenario_rows(scenario)]
    rows += growth_report.query_rows()
    for row in rows:
        line = next((x for x in section.splitlines() if x.startswith(f"| {row} |")), None)
        assert line is not None, f"row missing: {row}"
        assert "| - | - |" not in line, f"row without figures: {line}"
    assert "| **all tables** |" in section and "### Targets" in section
    # The page target counts every page and every operator API call.
    pages = sum(1 for name in fetch_names() if name.startswith("page: "))
    target = next(x for x in section.splitlines() if x.startswith("| every admin page and"))
    counted = f" of {len(fetch_names())} ({pages} pages, {len(fetch_names()) - pages} API calls)"
    assert counted in target, target
    assert (
        "| `qwallet reconcile --full` completes on the loaded database | clean | yes |" in section
    )
    assert "| `qwallet reconcile` (since the checkpoint) costs per new entry" in section
    # Where the incremental run's time went, statement by statement, in both phases.
    for phase in (empty, loaded):
        statements = phase["incrementalStatements"]
        assert {"_RANGE_ENTRY_COUNTS", "_ADVANCE", "_WALLET_HOLDS"} <= set(statements), phase
        assert all(s["calls"] > 0 and s["ms"] >= 0 for s in statements.values()), statements
    assert "### The incremental reconcile, statement by statement" in section
    line = next(x for x in section.splitlines() if x.startswith("| `_RANGE_ENTRY_COUNTS` |"))
    assert "| - |" not in line, line
    for name in call_names():
        assert f"**{name}**\n\n```text\n" in section, f"no plan for {name}"
    assert section.count("Seq Scan") + section.count("Index") > len(call_names())


def test_preload_that_does_not_fit_is_refused_before_anything_is_created(
    tmp_path: Path,
) -> None:
    require_postgres()
    completed = _bench(
        "--stored", str(10**12), "--short", "--output", str(tmp_path / "b.md"), timeout=60
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "refusing to preload" in completed.stderr and "needs about" in completed.stderr
    assert not (tmp_path / "b.md").exists()


async def _preloading(database: str) -> bool:
    connection = await asyncpg.connect(asyncpg_dsn(PG_URL), timeout=10)
    try:
        found = await connection.fetchval(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active'"
            " AND position($2 in query) > 0",
            database,
            bulk_load.CHUNK_MARK,
        )
    finally:
        await connection.close()
    return bool(found)


def test_sigterm_during_the_preload_drops_the_database(tmp_path: Path) -> None:
    require_postgres()
    before = asyncio.run(_bench_databases())
    # One small scenario before the preload: the interrupt is what is tested, not the phase.
    argv = [QWALLET, "bench", "--stored", "5000000", "--short", "--duration", "1"]
    argv += ["--open-duration", "1", "--scenarios", "withdraw", "--players", "1000"]
    argv += ["--output", str(tmp_path / "b.md")]
    env = {**os.environ, "QWALLET_BENCH_PG_URL": PG_URL}
    bench = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        created: set[str] = set()
        preloading = False
        deadline = time.monotonic() + 180
        while not preloading and time.monotonic() < deadline and bench.poll() is None:
            time.sleep(0.5)
            created = asyncio.run(_bench_databases()) - before
            preloading = any(asyncio.run(_preloading(name)) for name in created)
        assert bench.poll() is None, "the run ended before its preload could be interrupted"
        assert preloading, "no preload chunk ever ran (pg_stat_activity)"
        bench.send_signal(signal.SIGTERM)
        _, stderr = bench.communicate(timeout=90)
        assert bench.returncode == 130, stderr.decode()[-2000:]
        assert not (created & asyncio.run(_bench_databases())), "the bench database was kept"
        assert not (tmp_path / "b.md").exists()
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
