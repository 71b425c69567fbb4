"""The *Growth* section of ``docs/benchmarks.md``, from one ``GrowthReport``.

A growth run rewrites only that section (and a full ``qwallet bench`` keeps it: see
``report.render``), so the two kinds of run can be regenerated independently.
"""

from __future__ import annotations

from pathlib import Path

from qwallet.bench import operator_queries
from qwallet.bench.growth import (
    HTTP_REPEAT,
    HTTP_REPEAT_SHORT,
    UNTIMED_ROW,
    GrowthReport,
    Phase,
    ScenarioGrowth,
)
from qwallet.bench.report import TITLES

HEADING = "## Growth"
METHOD = [
    "- Growth (`--stored N`): after each phase's scenarios and an ANALYZE, every console page and",
    "  every operator API call is requested over HTTP from the running server",
    "  (`qwallet.bench.operator_queries.pages` and `operator_api`): the pages signed in as an",
    "  operator (session cookie), the API calls with an operator API key (bearer, no cookie); 10",
    "  requests per row (3 in `--short`), one when it takes over 2 s; the report gives the median",
    "  and the nearest-rank p99 (with 10 requests, the slowest). What each row opens comes from",
    "  the phase's own data: the transaction in the middle of the stored time range (the",
    "  transaction page, the list filtered by its mmTransactionId and by its player, its UTC day",
    "  for the day filter, the one-day settlement of every partner and the busiest partner's",
    "  one-day protocol report), the order in the middle of the orders (the empty phase has none:",
    "  that row says so), the partner with the most traffic (the bench partner: its share of the",
    "  preload and every scenario's writes: the list filtered by partner, its 31-day settlement",
    "  page and CSV ending on that day, its sandbox page and report over 24 h), a sandbox partner",
    "  without history (its sandbox page, the fault-rule calls, adding and removing one rule per",
    "  pair, and its last hour's report), and the signed-in operator's audit entries. Also the",
    "  unfiltered list (page 1 and page 200, reached by its cursors before the timings), the list",
    "  by state (rolled back) and by kind (deposit), the dashboard, players (and a nickname",
    "  search), the player page, orders (and by state), partners, holds, reconciliation, the",
    '  audit log and `POST /api/sessions` (a session for that player). The target "every admin',
    '  page and operator API call ≤ 100 ms median" counts all of these rows. The queries behind',
    "  the pages that read the most (the settlements, the busiest partner's one-day protocol",
    "  report, the players list and search, the transaction page, the player and audit filters)",
    "  are also called directly, with the other query rows, and their plans shown.",
]
"""The growth run's bullet of the *Method* section (written by a full ``qwallet bench``)."""


def scenario_rows(scenario: str) -> list[str]:
    title = TITLES.get(scenario, scenario)
    return [
        f"{title}: HTTP flows/s (closed loop, median)",
        f"{title}: pgbench flows/s (same SQL)",
        f"{title}: p99 ms, closed loop",
        f"{title}: p99 ms, open loop at the same offered rate",
        f"{title}: WAL bytes per flow (pgbench window)",
    ]


def query_rows() -> list[str]:
    """Every row of the operator table, in order (the test checks each is present)."""
    return [
        operator_queries.FULL_RECONCILE,
        operator_queries.INCREMENTAL_RECONCILE,
        *operator_queries.fetch_names(),
        *operator_queries.call_names(),
    ]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(loaded: float | None, empty: float | None) -> str:
    if loaded is None or empty is None or empty == 0:
        return "-"
    return f"{loaded / empty:.2f}"


def _scenario_values(result: ScenarioGrowth | None) -> list[float | None]:
    if result is None:
        return [None] * 5
    middle = sorted(result.saturation, key=lambda m: m.flows_per_s)
    median = middle[len(middle) // 2] if middle else None
    return [
        result.median_fps,
        result.pgbench_tps if result.pgbench_ok else None,
        median.latency_ms.get("p99") if median else None,
        result.open_loop.latency_ms.get("p99") if result.open_loop else None,
        result.wal_bytes_per_flow,
    ]


def _timing_cell(timing: operator_queries.Timing | None, ok: bool | None = None) -> str:
    if timing is None:
        return "-"
    if timing.error:
        return timing.error
    if timing.skipped:
        return f"not run: {timing.skipped}"
    median = timing.median_ms
    text = "-" if median is None else f"{median:,.1f}"
    if ok is False:
        text += " (differences found)"
    return text


def _short_name(name: str) -> str:
    return name.removeprefix("page: ").removeprefix("api: ")


def _timings(phase: Phase | None) -> dict[str, operator_queries.Timing]:
    if phase is None:
        return {}
    found = {t.name: t for t in phase.pages + phase.queries}
    for extra in (phase.reconcile, phase.untimed_reconcile):
        if extra is not None:
            found[extra.name] = extra
    if phase.incremental is not None:
        found[phase.incremental.timing.name] = phase.incremental.timing
    return found


def _verdict(phase: Phase | None, name: str) -> bool | None:
    """The reconcile verdict shown next to a reconcile row's time (None for other rows)."""
    if phase is None:
        return None
    if name in (operator_queries.FULL_RECONCILE, UNTIMED_ROW):
        return phase.reconcile_ok
    if name == operator_queries.INCREMENTAL_RECONCILE and phase.incremental is not None:
        return phase.incremental.ok
    return None


def us_per_entry(phase: Phase | None) -> float | None:
    """Microseconds of ``qwallet reconcile`` (since the checkpoint) per ledger entry it read."""
    run = phase.incremental if phase is not None else None
    if run is None or run.timing.median_ms is None or run.entries <= 0:
        return None
    return run.timing.median_ms * 1000 / run.entries


RATIO_TARGET = 0.9
PAGE_TARGET_MS = 100.0
BYTES_TARGET = 1_398 / 2  # half of what the first measurement at 5 M found (issue #12)


def bytes_per_stored(empty: Phase | None, loaded: Phase | None) -> float | None:
    if loaded is None:
        return None
    added = loaded.transactions - (empty.transactions if empty else 0)
    before = sum(a + b for a, b in empty.sizes.values()) if empty else 0
    after = sum(a + b for a, b in loaded.sizes.values())
    return (after - before) / added if added > 0 else None


def _targets(report: GrowthReport) -> list[str]:
    """The growth targets, met or not on this run (the loaded phase against the empty one)."""
    empty, loaded = report.phase("empty"), report.phase("loaded")
    if empty is None or loaded is None:
        return []
    lines = ["### Targets", "", "| target | measured | met |", "|---|---:|:---:|"]
    for scenario in report.options.scenarios:
        before, after = empty.scenarios.get(scenario), loaded.scenarios.get(scenario)
        if before is None or after is None or not before.median_fps:
            continue
        title = TITLES.get(scenario, scenario)
        http = after.median_fps / before.median_fps
        pgbench = after.pgbench_tps / before.pgbench_tps if before.pgbench_tps else 0.0
        lines.append(
            f"| {title} loaded ≥ 90 % of empty | HTTP {http:.0%}, pgbench {pgbench:.0%} |"
            f" {'yes' if min(http, pgbench) >= RATIO_TARGET else 'no'} |"
        )
    slow = [
        (t.name, t.median_ms)
        for t in loaded.pages
        if t.median_ms is None or t.median_ms > PAGE_TARGET_MS
    ]
    worst = ", ".join(
        f"{_short_name(name)} {'failed' if ms is None else f'{ms:,.0f} ms'}" for name, ms in slow
    )
    pages = sum(1 for t in loaded.pages if t.name.startswith("page: "))
    lines.append(
        f"| every admin page and operator API call ≤ {PAGE_TARGET_MS:g} ms median (loaded) |"
        f" {len(loaded.pages) - len(slow)} of {len(loaded.pages)} ({pages} pages,"
        f" {len(loaded.pages) - pages} API calls)"
        + (f"; over: {worst}" if worst else "")
        + f" | {'no' if slow or not loaded.pages else 'yes'} |"
    )
    per = bytes_per_stored(empty, loaded)
    lines.append(
        f"| database bytes per stored transaction ≤ {BYTES_TARGET:,.0f} | {_fmt(per)} |"
        f" {'yes' if per is not None and per <= BYTES_TARGET else 'no'} |"
    )
    timing = loaded.reconcile
    reconciled = timing is not None and not timing.error
    lines.append(
        f"| `qwallet reconcile --full` completes on the loaded database |"
        f" {_reconcile_word(loaded)} | {'yes' if reconciled else 'no'} |"
    )
    lines.append(_incremental_target(empty, loaded))
    return [*lines, ""]


INCREMENTAL_TARGET = 2.0
"""Loaded / empty time per entry read that still counts as "grows with new entries, not with
history": the two phases read about as many new entries, against 1 and 400 entries of history
per new one; a cost that followed history would be hundreds of times over."""


def _incremental_target(empty: Phase, loaded: Phase) -> str:
    before, after = us_per_entry(empty), us_per_entry(loaded)
    measured = "; ".join(
        f"{phase.label} {_timing_cell(phase.incremental.timing)}"
        if phase.incremental.timing.error or phase.incremental.timing.skipped
        else f"{phase.label} {us or 0:,.1f} µs per entry ({phase.incremental.entries:,} entries)"
        for phase, us in ((empty, before), (loaded, after))
        if phase.incremental is not None
    )
    met = before is not None and after is not None and after <= INCREMENTAL_TARGET * before
    return (
        "| `qwallet reconcile` (since the checkpoint) costs per new entry, not per stored one"
        f" (loaded ≤ {INCREMENTAL_TARGET:g} times empty, per entry) | {measured or '-'} |"
        f" {'yes' if met else 'no'} |"
    )


def _storage(empty: Phase | None, loaded: Phase | None) -> list[str]:
    if loaded is None:
        return []
    added = loaded.transactions - (empty.transactions if empty else 0)
    lines = [
        "| table | table bytes | index bytes | bytes per stored transaction (table · indexes) |",
        "|---|---:|---:|---:|",
    ]
    for name, (heap, indexes) in loaded.sizes.items():
        before_heap, before_indexes = empty.sizes.get(name, (0, 0)) if empty else (0, 0)
        if heap + indexes - before_heap - before_indexes < 64 * 1024:
            continue  # tables the preload does not touch
        per = ""
        if added > 0:
            per = f"{(heap - before_heap) / added:,.0f} · {(indexes - before_indexes) / added:,.0f}"
        lines.append(f"| {name} | {heap:,} | {indexes:,} | {per} |")
    per_total = bytes_per_stored(empty, loaded)
    heap_total = sum(heap for heap, _ in loaded.sizes.values())
    index_total = sum(indexes for _, indexes in loaded.sizes.values())
    lines.append(
        f"| **all tables** | {heap_total:,} | {index_total:,} | **{_fmt(per_total)}** in all |"
    )
    return lines


def section(report: GrowthReport) -> list[str]:
    empty, loaded = report.phase("empty"), report.phase("loaded")
    options = report.options
    t0 = empty.transactions if empty else 0
    t1 = loaded.transactions if loaded else 0
    correct = (
        "every acknowledged transaction found in its state, no failed request"
        if report.ok
        else "PROBLEMS: " + _problems(report)
    )
    lines = [
        HEADING,
        "",
        f"Produced by `{report.command}` — {report.started}, git commit `{report.commit}`,"
        f" {report.elapsed_s:.0f} s in all; {report.machine.get('cores')} cores,"
        f" load average at start {report.machine.get('load_average')} (shared machine).",
        "",
    ]
    if report.preload is not None:
        rate = report.preload.transactions / max(0.001, report.preload.elapsed_s)
        lines += [
            f"- **Preload**: {report.preload.transactions:,}{_asked(report)} completed"
            " transactions (70 %"
            " withdrawals, 30 % deposits, one in five rolled back, four ledger entries each,"
            f" over {options.players:,} wallets and {1 + 3} partners, spread over 180 days) and"
            f" {report.preload.orders:,} card-paid orders, in bulk SQL in"
            f" {report.preload.elapsed_s:.0f} s ({rate:,.0f} transactions/s), then"
            f" {_indexes(report)}VACUUM ANALYZE in {report.preload.vacuum_s:.0f} s."
            f" `qwallet reconcile --full` on the loaded database: {_reconcile_word(loaded)}.",
        ]
    if report.disk is not None:
        lines.append(f"- **Disk**: the preload {report.disk.describe()} (checked before starting).")
    lines += [
        f"- **Load**: {options.connections} connections, closed loop {options.repetitions} x"
        f" {options.duration_s:g} s per scenario and phase; pgbench for the same"
        f" {max(1, round(options.duration_s))} s; open loop {options.open_duration_s:g} s at 70 %"
        " of the empty database's saturation rate in both phases.",
        f"- **Correctness**: {correct}.",
        "",
        *_targets(report),
        "### Throughput, latency, WAL",
        "",
        f"| figure | empty ({t0:,} transactions) | loaded ({t1:,} transactions) | loaded / empty |",
        "|---|---:|---:|---:|",
    ]
    for scenario in options.scenarios:
        before = _scenario_values(empty.scenarios.get(scenario) if empty else None)
        after = _scenario_values(loaded.scenarios.get(scenario) if loaded else None)
        for label, a, b, digits in zip(
            scenario_rows(scenario), before, after, (0, 0, 2, 2, 0), strict=True
        ):
            lines.append(f"| {label} | {_fmt(a, digits)} | {_fmt(b, digits)} | {_ratio(b, a)} |")
    lines += [
        "",
        "WAL is `pg_current_wal_lsn()` before and after the pgbench window, over the flows pgbench"
        " completed; the position is cluster-wide, so other databases' writes count too"
        f" (commits elsewhere in those windows: {_other_commits(report)}).",
        "",
        "### Operator pages, operator API calls and periodic queries (median ms)",
        "",
        "| call | empty | loaded | loaded / empty | loaded p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    before_t, after_t = _timings(empty), _timings(loaded)
    names = query_rows()
    if any(p.untimed_reconcile for p in report.phases):
        names.insert(1, UNTIMED_ROW)
    for name in names:
        ta, tb = before_t.get(name), after_t.get(name)
        lines.append(
            f"| {name} | {_timing_cell(ta, _verdict(empty, name))}"
            f" | {_timing_cell(tb, _verdict(loaded, name))} |"
            f" {_ratio(tb.median_ms if tb else None, ta.median_ms if ta else None)} |"
            f" {_p99(tb)} |"
        )
    lines += [
        "",
        "*page:* rows are HTTP wall time per response from the running server, signed in to"
        " the console as an operator (a session cookie); *api:* rows are operator API calls"
        " with an operator API key (bearer), without the cookie. Each opens what makes it work"
        " on a grown database, taken from the phase's own data before the timings: the"
        " transaction in the middle of the stored time range (its page, its mmTransactionId,"
        " its player and its UTC day: the day filter, the one-day settlement and the one-day"
        " protocol report), the order in the middle of the orders, the partner with the most"
        " traffic (the bench partner: the preload's share and every scenario's writes; its"
        f" {operator_queries.SETTLEMENT_DAYS}-day settlement ends on that day), a sandbox"
        " partner without history (fault rules are refused for others; a rule is added and"
        " removed in pairs), and the signed-in operator's own audit entries. Each HTTP row is"
        f" fetched {HTTP_REPEAT} times ({HTTP_REPEAT_SHORT} in `--short`), once when it took over"
        f" {operator_queries.SLOW_S:g} s; *loaded p99* is the nearest-rank p99 of those"
        " fetches, that is the slowest of them. The other rows call the function behind the"
        " page or the periodic job directly (database time plus the asyncpg round trips); the"
        " median of"
        f" {'3' if options.label == 'short' else '5'} calls, or one call when it took over"
        f" {operator_queries.SLOW_S:g} s. The reconcile rows run once each, as the operator's"
        " command does (`run_reconcile`: same pool and statement timeout): `--full` before the"
        " phase's scenarios, leaving a checkpoint, and `qwallet reconcile` after its timings,"
        f" reading only the entries written since ({_entries(empty)} in the empty phase,"
        f" {_entries(loaded)} in the loaded one). Statistics are refreshed (ANALYZE) before the"
        " timings, as autovacuum would have them.",
        "",
        *_incremental_statements(empty, loaded),
        "### Storage",
        "",
        *_storage(empty, loaded),
        "",
        "### Plans on the loaded database",
        "",
    ]
    for timing in loaded.queries if loaded else []:
        lines += [f"**{timing.name}**", "", "```text"]
        why = timing.error or "no statement"
        lines += ["\n\n".join(timing.plans) if timing.plans else f"(no plan: {why})"]
        lines += ["```", ""]
    return lines


def _incremental_statements(empty: Phase | None, loaded: Phase | None) -> list[str]:
    """Where the incremental reconcile's time went, per statement and per 1,000 entries read,
    so that a per-entry cost growing with history shows which statements grow."""
    runs = [p.incremental if p is not None else None for p in (empty, loaded)]
    if not any(run is not None and run.statements for run in runs):
        return []

    def per_thousand(run: operator_queries.Reconciled | None, name: str) -> float | None:
        if run is None or run.entries <= 0:
            return None
        found = [t for t in run.statements if t.name == name]
        return found[0].ms * 1000 / run.entries if found else 0.0

    def calls(run: operator_queries.Reconciled | None, name: str) -> str:
        found = [t for t in run.statements if t.name == name] if run is not None else []
        return f"{found[0].calls:,}" if found else "-"

    names: list[str] = []
    for run in reversed(runs):  # the loaded run's order: its slowest statement first
        for timing in run.statements if run is not None else []:
            if timing.name not in names:
                names.append(timing.name)
    lines = [
        "### The incremental reconcile, statement by statement",
        "",
        "| statement | empty: ms per 1,000 entries | calls | loaded: ms per 1,000 entries"
        " | calls | loaded / empty |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        a, b = per_thousand(runs[0], name), per_thousand(runs[1], name)
        lines.append(
            f"| `{name}` | {_fmt(a, 1)} | {calls(runs[0], name)} | {_fmt(b, 1)}"
            f" | {calls(runs[1], name)} | {_ratio(b, a)} |"
        )
    totals = [sum(t.ms for t in run.statements) if run is not None else None for run in runs]
    lines += [
        "",
        "Wall time of each statement as the run's caller sees it (database work and the round"
        " trip; `BEGIN`/`COMMIT` not counted), named after its constant in"
        " `service/reconcile.py` or by its first words; statements in all: "
        + ", ".join(
            f"{label} {total / 1000:,.1f} s of {(run.timing.median_ms or 0) / 1000:,.1f} s"
            for label, run, total in zip(("empty", "loaded"), runs, totals, strict=True)
            if run is not None and total is not None
        )
        + ".",
        "",
    ]
    return lines


def _p99(timing: operator_queries.Timing | None) -> str:
    """The p99 of the HTTP rows (nearest rank: the slowest run of so few); "-" for the rest."""
    if timing is None or not timing.name.startswith(("page: ", "api: ")):
        return "-"
    return _fmt(timing.p99_ms, 1)


def _entries(phase: Phase | None) -> str:
    if phase is None or phase.incremental is None:
        return "-"
    return f"{phase.incremental.entries:,} entries"


def _asked(report: GrowthReport) -> str:
    if report.preload is None or report.preload.transactions >= report.stored:
        return ""
    return f" (of {report.stored:,} asked: the preload's time budget ran out)"


def _indexes(report: GrowthReport) -> str:
    if report.preload is None or not report.preload.rebuilt:
        return "(indexes kept and grown by the inserts) "
    return (
        f"the {len(report.preload.rebuilt)} indexes of transactions and ledger_entries, dropped"
        f" for the load, built again in {report.preload.index_s:.0f} s (compact, as after a"
        " REINDEX: indexes grown by inserts are larger; compare `--keep-indexes`), "
    )


def _reconcile_word(phase: Phase | None) -> str:
    if phase is None or phase.reconcile is None:
        return "not run"
    if phase.reconcile_ok is None:
        return phase.reconcile.error or "not run"
    word = "clean" if phase.reconcile_ok else "**differences found**"
    if phase.untimed_reconcile is not None:
        return f"{phase.reconcile.error}; {word} without the statement timeout"
    return word


def _problems(report: GrowthReport) -> str:
    found = [
        f"{phase.label} {name}: {'; '.join(s.problems)}"
        for phase in report.phases
        for name, s in phase.scenarios.items()
        if s.problems
    ]
    found += [
        f"{p.label}: reconcile found differences" for p in report.phases if p.reconcile_ok is False
    ]
    return "; ".join(found)


def _other_commits(report: GrowthReport) -> str:
    return (
        ", ".join(
            f"{phase.label} {TITLES.get(name, name)} {s.other_commits:,}"
            for phase in report.phases
            for name, s in phase.scenarios.items()
        )
        or "-"
    )


def existing(path: Path) -> list[str]:
    """The *Growth* section already in ``path`` (kept by a full ``qwallet bench``), or []."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    if HEADING not in lines:
        return []
    start = lines.index(HEADING)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def splice(path: Path, new: list[str]) -> Path:
    """Replace the *Growth* section of ``path`` (or put it before *Method*, or at the end)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = text.split("\n")
    old = existing(path)
    if old:
        start = lines.index(HEADING)
        lines[start : start + len(old)] = new
    elif "## Method" in lines:
        at = lines.index("## Method")
        lines[at:at] = new
    else:
        lines += ["", *new]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


__all__ = ["METHOD", "existing", "query_rows", "scenario_rows", "section", "splice", "us_per_entry"]
