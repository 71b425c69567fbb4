"""``qwallet bench --short`` end to end, as CI runs it: the report is written, every scenario
passes its correctness check with no failed request, and the pgbench ceilings are measured.

The short mode is the one the README and issue #5 name (under two minutes); the FastAPI
reference is left out because its packages are in the ``bench`` extra, not in ``test``. Needs
the PostgreSQL server; skipped with the reason when it is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hdrh", reason="the bench extra is not installed (pip install -e '.[bench]')")
pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")

from qwallet.bench.loadgen import SCENARIOS
from tests.conftest import PG_URL, require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

QWALLET = str(Path(sys.executable).parent / "qwallet")


def test_short_bench_run_writes_the_report_and_passes_correctness(tmp_path: Path) -> None:
    require_postgres()
    output = tmp_path / "benchmarks.md"
    completed = subprocess.run(
        [QWALLET, "bench", "--short", "--no-reference", "--json", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env={**os.environ, "QWALLET_BENCH_PG_URL": PG_URL, "COLUMNS": "200"},
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True, summary
    run = summary["runs"]["qwallet-postgresql"]
    assert run["failure"] is None and run["peakRssMb"], run
    assert list(run["scenarios"]) == list(SCENARIOS)
    for name, scenario in run["scenarios"].items():
        assert scenario["ok"] is True and scenario["errors"] == 0, (name, scenario)
        assert scenario["flowsPerS"] > 0 and scenario["pgbenchTps"] > 0, (name, scenario)
    text = output.read_text()
    assert "mode `short`" in text and "## Targets (PostgreSQL)" in text
    # pgbench also ran open loop at the 70 % point's rate, its latencies read from its logs.
    assert text.count("*pgbench alone, same SQL*") == len(SCENARIOS)
    assert (tmp_path / "bench" / "throughput.png").exists()
    assert (tmp_path / "bench" / "latency.png").exists()
