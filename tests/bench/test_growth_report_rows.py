"""Rows of the growth report that depend on what a phase could run.

The incremental reconcile is only measured after a ``--full`` that wrote the phase's checkpoint:
without one it would read everything since the previous checkpoint, the whole preload
(bench/growth.py). The row then says it was not run, instead of a cost per entry.
"""

from __future__ import annotations

from qwallet.bench import growth_report, operator_queries
from qwallet.bench.growth import Phase


def reconciled(ms: float, entries: int) -> operator_queries.Reconciled:
    timing = operator_queries.Timing(operator_queries.INCREMENTAL_RECONCILE, runs_ms=[ms])
    return operator_queries.Reconciled(timing, True, entries, full=False)


def test_an_incremental_run_skipped_for_want_of_a_checkpoint_is_reported_as_not_run() -> None:
    empty = Phase("empty", incremental=reconciled(100.0, 10_000))
    loaded = Phase(
        "loaded",
        incremental=operator_queries.Reconciled(
            operator_queries.Timing(
                operator_queries.INCREMENTAL_RECONCILE,
                skipped="the phase's reconcile --full wrote no checkpoint",
            ),
            full=False,
        ),
    )
    row = growth_report._incremental_target(empty, loaded)
    assert "empty 10.0 µs per entry (10,000 entries)" in row
    assert "loaded not run: the phase's reconcile --full wrote no checkpoint" in row
    assert growth_report.us_per_entry(loaded) is None
    assert row.endswith("| no |")  # a target not measured is not met


def test_measured_runs_are_compared_per_entry() -> None:
    row = growth_report._incremental_target(
        Phase("empty", incremental=reconciled(100.0, 10_000)),
        Phase("loaded", incremental=reconciled(300.0, 10_000)),
    )
    assert "loaded 30.0 µs per entry (10,000 entries)" in row
    assert row.endswith("| no |")  # three times the empty cost per entry
