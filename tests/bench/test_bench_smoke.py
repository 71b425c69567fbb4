"""A tiny ``qwallet bench`` run end to end: the report is written and every correctness check passes.

Needs the ``bench`` extra and the PostgreSQL server; skipped with the reason when either is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("hdrh", reason="the bench extra is not installed (pip install -e '.[bench]')")
pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")

from qwallet.bench import report
from qwallet.bench.runner import BenchOptions, run_bench
from tests.conftest import PG_URL, postgres_unavailable_reason

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_tiny_bench_run_writes_the_report_and_passes_correctness(tmp_path: Path) -> None:
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    options = BenchOptions.short(
        players=200,
        connections=4,
        duration_s=1.0,
        open_duration_s=1.0,
        warmup_s=0.2,
        workers=1,
        pg_url=PG_URL,
        reference=False,
        label="smoke",
    )
    result = run_bench(options)
    output = report.render(result, tmp_path / "benchmarks.md")

    run = result.run("qwallet-postgresql")
    assert run is not None and run.failure is None, run and run.failure
    assert [s.scenario for s in run.scenarios] == list(options.scenarios)
    for scenario in run.scenarios:
        assert scenario.verdict is not None and scenario.verdict.ok, scenario.verdict
        assert scenario.errors == 0
        assert scenario.median_fps > 0
        assert scenario.ceiling is not None and scenario.ceiling.ok, scenario.ceiling
        # pgbench open loop at the 70 % point's rate, its latencies read from its own logs.
        floor = scenario.ceiling_open
        assert floor is not None and floor.ok and floor.rate, floor
        assert 0 < floor.percentiles_ms["p50"] <= floor.percentiles_ms["p99"], floor
        assert floor.percentiles_ms["p99"] <= floor.percentiles_ms["max"], floor
    assert result.ok
    text = output.read_text()
    assert "## qwallet-postgresql" in text and "Saturation" in text
    assert "*pgbench alone, same SQL*" in text
    assert (tmp_path / "bench" / "throughput.png").exists()
