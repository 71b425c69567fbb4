"""``qwallet verify``'s table: records summed per suite and backend, rendered as Markdown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from qwallet.verify import aggregate, render, update_page
from tests.reliability.harness import QWALLET


def test_records_are_summed_per_suite_and_backend() -> None:
    records = [
        {"suite": "kill", "backend": "sqlite", "runs": 1, "operations": 10, "faults": 5,
         "failures": 0, "invariantChecks": 7},
        {"suite": "kill", "backend": "sqlite", "runs": 1, "operations": 5, "faults": 5,
         "failures": 1, "invariantChecks": 3},
        {"suite": "kill", "backend": "postgres", "runs": 1, "operations": 1, "faults": 0,
         "failures": 0, "invariantChecks": 1},
    ]  # fmt: skip
    rows = aggregate(records)
    assert [(r["suite"], r["backend"]) for r in rows] == [("kill", "sqlite"), ("kill", "postgres")]
    assert rows[0]["operations"] == 15 and rows[0]["failures"] == 1 and rows[0]["runs"] == 2
    page = render(rows, mode="CI-sized", exit_code=1, seconds=3, command="qwallet verify")
    assert "| kill | sqlite | 2 | 15 | 10 | 1 | 10 |" in page
    assert "failures in all suites: **1**" in page


def test_liveness_and_model_tables_are_rendered() -> None:
    records = [
        {"suite": "kill", "backend": "sqlite", "runs": 1, "operations": 10, "faults": 5,
         "failures": 0, "invariantChecks": 7, "holdsOpened": 12, "holdsFinalizedByCallers": 12,
         "holdsLeftPending": 0},
        {"suite": "live", "backend": "postgres", "runs": 1, "operations": 10, "faults": 5,
         "failures": 0, "invariantChecks": 7, "holdsOpened": 30, "holdsFinalizedByCallers": 20,
         "holdsFinalizedByResolver": 10, "holdsLeftPending": 0},
        {"suite": "model", "backend": "sqlite", "runs": 200, "operations": 9000, "faults": 0,
         "failures": 0, "invariantChecks": 100, "examples": 200, "steps": 50, "calls": 9000,
         "seconds": 120.4},
    ]  # fmt: skip
    page = render(aggregate(records), mode="CI-sized", exit_code=0, seconds=3, command="x")
    assert "| kill | sqlite | 12 | 12 | 0 | 0 |" in page
    assert "| live | postgres | 30 | 20 | 10 | 0 |" in page
    assert "| sqlite | 200 | 50 | 9,000 | 120 |" in page


def test_append_keeps_the_records_of_earlier_parts(tmp_path: Path) -> None:
    """A long run made in parts: ``--append`` adds to the records file instead of emptying it."""
    root = Path(__file__).resolve().parents[2]
    results, page = tmp_path / "records.jsonl", tmp_path / "page.md"
    earlier = {"suite": "earlier part", "backend": "sqlite", "runs": 1, "operations": 7,
               "faults": 0, "failures": 0, "invariantChecks": 3}  # fmt: skip
    results.write_text(json.dumps(earlier) + "\n")
    quick = "test_records_are_summed_per_suite_and_backend"  # records nothing itself
    command = [QWALLET, "verify", "--root", str(root), "-k", quick]
    command += ["--results", str(results), "--output", str(page)]
    subprocess.run([*command, "--append"], check=True, capture_output=True, timeout=300)
    assert "| earlier part | sqlite | 1 | 7 | 0 | 0 | 3 |" in page.read_text()
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    assert "earlier part" not in page.read_text()


def test_security_matrix_lists_each_attack_per_backend() -> None:
    records = [
        {"suite": "security", "backend": "sqlite", "runs": 1, "operations": 41, "faults": 0,
         "failures": 0, "invariantChecks": 0, "module": "test_web", "case": "lockout | right one",
         "finding": "5"},
        {"suite": "security", "backend": "postgres", "runs": 1, "operations": 41, "faults": 0,
         "failures": 1, "invariantChecks": 0, "module": "test_web", "case": "lockout | right one",
         "finding": "5"},
        {"suite": "security", "backend": "-", "runs": 1, "operations": 3, "faults": 0,
         "failures": 0, "invariantChecks": 0, "module": "test_kit", "case": "field shift",
         "finding": "4"},
    ]  # fmt: skip
    page = render(aggregate(records), mode="CI-sized", exit_code=1, seconds=3, command="x",
                  records=records)  # fmt: skip
    assert "**2 of 3** runs refused" in page
    assert "| 5 | lockout \\| right one | `test_web` | refused (41) | **FAILED** (41) | — |" in page
    assert "| 4 | field shift | `test_kit` | — | — | refused (3) |" in page
    assert page.index("| 4 | field shift") < page.index("| 5 | lockout")


def test_failover_table_is_rendered_with_recovery_median_and_max() -> None:
    records = [
        {"suite": "failover", "backend": "postgres", "runs": 1, "operations": 100, "faults": 7,
         "failures": 0, "invariantChecks": 50, "failovers": 5, "acknowledgedLost": 0,
         "doubleApplied": 0, "recoveriesS": [1.0, 9.0, 3.0], "settings": "ttl 5 s"},
        {"suite": "failover", "backend": "postgres", "runs": 1, "operations": 100, "faults": 7,
         "failures": 0, "invariantChecks": 50, "failovers": 4, "acknowledgedLost": 0,
         "doubleApplied": 0, "recoveriesS": [2.0, 12.5], "settings": "ttl 5 s"},
    ]  # fmt: skip
    page = render(aggregate(records), mode="CI-sized", exit_code=0, seconds=3, command="x")
    assert "| failover | postgres | 9 | 0 | 0 | 3.0 s | 12.5 s | ttl 5 s |" in page


def test_failover_records_with_different_settings_are_not_mixed() -> None:
    """An appended run under new cluster settings must not be summed with an older one as if
    both had the new settings; records with the same settings add up, watchdog resets too."""

    def record(settings: str, resets: int) -> dict[str, object]:
        return {"suite": "failover", "backend": "postgres", "runs": 1, "operations": 100,
                "faults": 7, "failures": 0, "invariantChecks": 50, "failovers": 5,
                "acknowledgedLost": 0, "doubleApplied": 0, "recoveriesS": [5.0],
                "settings": settings, "watchdogResets": resets, "watchdogResetsUnplanned": 0}  # fmt: skip

    with pytest.raises(ValueError, match="different settings"):
        aggregate([record("ttl 5 s", 0), record("ttl 5 s, use_slots off", 1)])
    rows = aggregate([record("ttl 5 s, watchdog", 2), record("ttl 5 s, watchdog", 3)])
    assert rows[0]["watchdogResets"] == 5
    page = render(rows, mode="long", exit_code=0, seconds=3, command="x")
    assert "5 nodes reset because their Patroni stopped renewing the leader key, 0 of" in page


def test_update_replaces_only_the_suites_that_ran() -> None:
    """``--update``: a run of one suite on a page of a full run replaces that suite's rows and
    the failover section; the other suites' figures stay as they were."""
    before = [
        {"suite": "kill", "backend": "sqlite", "runs": 1, "operations": 10, "faults": 5,
         "failures": 2, "invariantChecks": 7, "holdsOpened": 4, "holdsFinalizedByCallers": 4,
         "holdsLeftPending": 0},
        {"suite": "failover", "backend": "postgres", "runs": 1, "operations": 100, "faults": 7,
         "failures": 1, "invariantChecks": 50, "holdsOpened": 9, "holdsFinalizedByCallers": 9,
         "holdsLeftPending": 0, "failovers": 5, "acknowledgedLost": 0, "doubleApplied": 0,
         "recoveriesS": [8.0, 13.0], "settings": "ttl 5 s"},
        {"suite": "model", "backend": "sqlite", "runs": 200, "operations": 9000, "faults": 0,
         "failures": 0, "invariantChecks": 100, "examples": 200, "steps": 50, "calls": 9000},
    ]  # fmt: skip
    page = render(aggregate(before), mode="CI-sized", exit_code=0, seconds=3, command="x")
    page = page.replace("their hold resolver and payment worker", "an older description")
    now = [
        {"suite": "failover", "backend": "postgres", "runs": 1, "operations": 300, "faults": 9,
         "failures": 0, "invariantChecks": 70, "holdsOpened": 20, "holdsFinalizedByCallers": 18,
         "holdsFinalizedByResolver": 2, "holdsLeftPending": 0, "failovers": 6,
         "acknowledgedLost": 0, "doubleApplied": 0, "recoveriesS": [4.0, 6.0, 5.0],
         "settings": "ttl 5 s", "faultList": [
             {"kind": "switchover", "failover": True, "recoveryS": 4.0, "clusterS": 3.0,
              "outageS": 1.5}],
         "holdsAbandoned": 2, "holdsResolvedByResolver": 2, "ordersPaid": 3,
         "ordersDelivered": 3, "callbacksSent": 4, "callbacksResent": 1, "callbackOverlaps": 0},
    ]  # fmt: skip
    updated = update_page(page, aggregate(now), note="failover updated")
    assert "| kill | sqlite | 1 | 10 | 5 | 2 | 7 |" in updated
    assert "| kill | sqlite | 4 | 4 | 0 | 0 |" in updated
    assert "| failover | postgres | 1 | 300 | 9 | 0 | 70 |" in updated
    assert "| failover | postgres | 20 | 18 | 2 | 0 |" in updated
    assert "| failover | postgres | 1 | 100 |" not in updated
    assert "| failover | postgres | 6 | 0 | 0 | 5.0 s | 6.0 s | ttl 5 s |" in updated
    assert "8.0 s" not in updated and "13.0 s" not in updated
    assert "| switchover | 1 | 1 | 4.0 s | 4.0 s | 3.0 s | 3.0 s | 1.5 s | 1.5 s |" in updated
    assert "3 of 3 paid orders delivered" in updated
    assert "failures in all suites: **2**" in updated
    assert "; failover updated" in updated
    assert updated.index("### Failover") < updated.index("### Model-based test size")
    assert "| sqlite | 200 | 50 | 9,000 |" in updated
    assert updated.count("### Failover") == 1
    assert "an older description" not in updated  # the suites' descriptions are the code's
    assert "their hold resolver and payment worker" in updated
