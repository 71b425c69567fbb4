"""``docs/benchmarks.md`` and its charts (``docs/bench/*.png``) from one ``BenchReport``."""

from __future__ import annotations

from pathlib import Path

from qwallet.bench.runner import BenchReport, Measurement, ScenarioResult, TargetRun

TITLES = {
    "balance": "getBalance",
    "withdraw": "withdraw",
    "withdraw_confirm": "withdraw → confirm",
    "withdraw_rollback": "withdraw → rollback",
    "replay": "idempotent replay (withdraw)",
    "hot_wallet": "one hot wallet (withdraw)",
    "zipf_mix": "Zipf-skewed mix",
}
TARGETS = {
    # scenario: (figure, target, unit)
    "withdraw": (4000.0, "req/s"),
    "withdraw_confirm": (2000.0, "flows/s"),
    "balance": (8000.0, "req/s"),
    "hot_wallet": (1500.0, "req/s"),
}
LATENCY_TARGET_MS = {"p50": 2.0, "p99": 10.0, "p99.9": 25.0}
RSS_TARGET_MB = 150.0
CEILING_SHARE_TARGET = 0.35


def _f(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _ms(measurement: Measurement, key: str) -> str:
    value = measurement.latency_ms.get(key)
    return "-" if value is None else f"{value:.2f}"


def _verdict(result: ScenarioResult) -> str:
    if result.verdict is None:
        return "not checked"
    return "ok" if result.verdict.ok else "**VOID**: " + "; ".join(result.verdict.problems)


def _throughput_table(run: TargetRun) -> list[str]:
    lines = [
        "| scenario | flows/s (median) | req/s (median) | repetitions (flows/s) | errors |"
        " pgbench flows/s | HTTP / pgbench | CPU ms/req server · generator · PostgreSQL |"
        " correctness |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for result in run.scenarios:
        median = result.median_measurement
        if median is None:
            continue
        ceiling = result.ceiling
        ratio = (
            f"{result.median_fps / ceiling.tps:.0%}"
            if ceiling and ceiling.ok and ceiling.tps
            else "-"
        )
        lines.append(
            f"| {TITLES.get(result.scenario, result.scenario)} | {_f(result.median_fps)} |"
            f" {_f(result.median_rps)} |"
            f" {', '.join(_f(m.flows_per_s) for m in result.saturation)} | {result.errors} |"
            f" {_f(ceiling.tps) if ceiling and ceiling.ok else '-'} | {ratio} |"
            f" {_cpu(median)} | {_verdict(result)} |"
        )
    return lines


def _cpu(measurement: Measurement) -> str:
    cpu = measurement.cpu_ms_per_request
    return f"{cpu['server']:.2f} · {cpu['generator']:.2f} · {cpu['postgres']:.2f}"


def _latency_table(run: TargetRun) -> list[str]:
    # CPU per request beside the latencies: served one at a time (open loop), a request can cost
    # more than in the closed loop's batches, which moves where the system saturates.
    lines = [
        "| scenario | load | offered flows/s | achieved flows/s | p50 ms | p90 ms | p99 ms |"
        " p99.9 ms | max ms | errors | CPU ms/req server · generator · PostgreSQL |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in run.scenarios:
        saturation = result.median_fps
        for measurement in result.open_loop:
            offered = measurement.offered_fps or 0.0
            share = offered / saturation if saturation else 0.0
            lines.append(
                f"| {TITLES.get(result.scenario, result.scenario)} | {share:.0%} |"
                f" {_f(offered)} | {_f(measurement.flows_per_s)} | {_ms(measurement, 'p50')} |"
                f" {_ms(measurement, 'p90')} | {_ms(measurement, 'p99')} |"
                f" {_ms(measurement, 'p99.9')} | {_ms(measurement, 'max')} |"
                f" {measurement.errors} | {_cpu(measurement)} |"
            )
        floor = result.ceiling_open
        if floor is not None and floor.ok and floor.percentiles_ms and saturation:
            share = (floor.rate or 0.0) / saturation
            cells = " | ".join(
                f"{floor.percentiles_ms[key]:.2f}" for key in ("p50", "p90", "p99", "p99.9", "max")
            )
            lines.append(
                f"| *pgbench alone, same SQL* | {share:.0%} | {_f(floor.rate or 0.0)} |"
                f" {_f(floor.tps)} | {cells} | {floor.failed} | - |"
            )
    return lines


def _targets_table(report: BenchReport) -> list[str]:
    run = report.run("qwallet-postgresql")
    if run is None:
        return []
    lines = ["| target | measured | met |", "|---|---:|:---:|"]

    def row(name: str, measured: str, met: bool) -> None:
        lines.append(f"| {name} | {measured} | {'yes' if met else 'no'} |")

    for scenario, (figure, unit) in TARGETS.items():
        result = run.scenario(scenario)
        if result is None:
            continue
        value = result.median_fps if unit == "flows/s" else result.median_rps
        row(f"{TITLES[scenario]} ≥ {_f(figure)} {unit}", f"{_f(value)} {unit}", value >= figure)
    withdraw = run.scenario("withdraw")
    if withdraw and withdraw.ceiling and withdraw.ceiling.tps:
        share = withdraw.median_fps / withdraw.ceiling.tps
        row("withdraw ≥ 35 % of the pgbench ceiling", f"{share:.0%}", share >= CEILING_SHARE_TARGET)
    hot = run.scenario("hot_wallet")
    if hot:
        row(
            "hot wallet: zero errors and deadlocks",
            f"{hot.errors} errors, {hot.deadlocks} deadlocks",
            hot.errors == 0 and hot.deadlocks == 0,
        )
    if withdraw:
        at70 = [m for m in withdraw.open_loop if _near(m, withdraw.median_fps, 0.7)]
        floor = withdraw.ceiling_open.percentiles_ms if withdraw.ceiling_open else {}
        for key, limit in LATENCY_TARGET_MS.items():
            if at70 and key in at70[0].latency_ms:
                value = at70[0].latency_ms[key]
                alone = f" (PostgreSQL alone: {floor[key]:.2f} ms)" if key in floor else ""
                row(
                    f"withdraw open loop at 70 %: {key} ≤ {limit:g} ms",
                    f"{value:.2f} ms{alone}",
                    value <= limit,
                )
    if run.peak_rss_mb:
        peak = max(run.peak_rss_mb)
        row(
            f"RSS per server process ≤ {RSS_TARGET_MB:g} MB",
            f"{peak:.0f} MB",
            peak <= RSS_TARGET_MB,
        )
    return lines


def _near(measurement: Measurement, saturation: float, fraction: float) -> bool:
    offered = measurement.offered_fps or 0.0
    return saturation > 0 and abs(offered / saturation - fraction) < 0.02


def _charts(report: BenchReport, directory: Path) -> list[str]:
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    run = report.run("qwallet-postgresql") or (report.runs[0] if report.runs else None)
    if run is None or not run.scenarios:
        return made
    names = [TITLES.get(s.scenario, s.scenario) for s in run.scenarios]
    positions = list(range(len(names)))
    figure, axes = plt.subplots(figsize=(10, 4.5))
    width = 0.27
    series: list[tuple[str, list[float]]] = [
        (f"qwallet {run.target.split('-')[-1]}", [s.median_fps for s in run.scenarios])
    ]
    if any(s.ceiling for s in run.scenarios):
        series.append(
            ("pgbench (same SQL)", [s.ceiling.tps if s.ceiling else 0.0 for s in run.scenarios])
        )
    sqlite = report.run("qwallet-sqlite")
    if sqlite and run is not sqlite:
        series.append(
            (
                "qwallet sqlite",
                [
                    (sqlite.scenario(s.scenario).median_fps if sqlite.scenario(s.scenario) else 0.0)  # type: ignore[union-attr]
                    for s in run.scenarios
                ],
            )
        )
    for offset, (label, values) in enumerate(series):
        axes.bar(
            [p + (offset - (len(series) - 1) / 2) * width for p in positions],
            values,
            width,
            label=label,
        )
    axes.set_xticks(positions, names, rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("flows per second (closed loop, median)")
    axes.set_title(f"Saturation throughput, {run.connections} connections, {run.workers} workers")
    axes.legend()
    figure.tight_layout()
    figure.savefig(directory / "throughput.png", dpi=100)
    plt.close(figure)
    made.append("throughput.png")

    figure, axes = plt.subplots(figsize=(10, 4.5))
    keys = ["p50", "p90", "p99", "p99.9", "max"]
    for result in run.scenarios:
        for measurement in result.open_loop:
            if _near(measurement, result.median_fps, 0.7) and measurement.latency_ms:
                axes.plot(
                    keys,
                    [measurement.latency_ms.get(k, 0.0) for k in keys],
                    marker="o",
                    label=TITLES.get(result.scenario, result.scenario),
                )
    axes.set_yscale("log")
    axes.set_ylabel("latency, ms (log scale; from the intended send time)")
    axes.set_title("Open loop at 70 % of saturation")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(directory / "latency.png", dpi=100)
    plt.close(figure)
    made.append("latency.png")
    return made


def _comparison(report: BenchReport) -> list[str]:
    reference = report.run("fastapi-reference")
    ours = report.run("qwallet-postgresql")
    mine = ours.scenario("withdraw") if ours else None
    if reference is None or mine is None:
        return []
    theirs = reference.scenario("withdraw")
    lines = ["## Comparison", ""]
    if theirs is None or not theirs.median_fps:
        why = reference.failure or "it answered no request in the measured window"
        lines += [f"The FastAPI reference was not measured: {why}.", ""]
        return lines
    ratio = mine.median_fps / theirs.median_fps
    lines += [
        f"withdraw, same database, same load: qwallet {_f(mine.median_fps)} req/s, the FastAPI +"
        f" SQLAlchemy ORM reference (`bench/fastapi_reference`) {_f(theirs.median_fps)} req/s:"
        f" **{ratio:.2f} times**.",
        "",
    ]
    mine_cpu = mine.median_measurement
    theirs_cpu = theirs.median_measurement
    if mine_cpu and theirs_cpu:
        lines += [
            "Server CPU per withdraw: qwallet"
            f" {mine_cpu.cpu_ms_per_request['server']:.2f} ms, the reference"
            f" {theirs_cpu.cpu_ms_per_request['server']:.2f} ms; PostgreSQL CPU per withdraw:"
            f" {mine_cpu.cpu_ms_per_request['postgres']:.2f} ms vs"
            f" {theirs_cpu.cpu_ms_per_request['postgres']:.2f} ms. Both servers verify the partner"
            " password once (scrypt, off the event loop, concurrent first requests sharing one)"
            " and then answer from a per-process cache, and both are warmed up until their rate"
            " stops rising before they are measured.",
            "",
        ]
    return lines


def render(report: BenchReport, output: Path, notes: str = "") -> Path:
    """Write the Markdown report (and charts beside it in ``bench/``); returns its path."""
    options = report.options
    charts = _charts(report, output.parent / "bench")
    lines = [
        "# Benchmarks",
        "",
        "Regenerated by `qwallet bench` — do not edit by hand (the *Notes* section is kept in",
        "`src/qwallet/bench/notes.md`). Every figure below comes from one run on one machine;",
        "quote the ratios, not the absolute numbers, across machines.",
        "",
        f"- **Run**: {report.started}, mode `{options.label}`, {report.elapsed_s:.0f} s in all;"
        f" git commit `{report.commit}`; seed {options.seed}",
        f"- **Machine**: {report.machine.get('cpu')}, {report.machine.get('cores')} cores,"
        f" {report.machine.get('ram_gb')} GB RAM; load average at start"
        f" {report.machine.get('load_average')} (a shared machine: other work ran beside the"
        " benchmark, and the load generator, the server and PostgreSQL share the cores)",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
        "- **Database**: "
        + ", ".join(f"{k} = {v}" for k, v in report.database_settings.items())
        + f"; {options.players:,} funded wallets with one live session each,"
        f" seeded in {report.seed_s:.1f} s",
        f"- **Load**: {options.connections} keep-alive connections from"
        f" {options.generators} generator process(es); closed loop {options.repetitions} x"
        f" {options.duration_s:g} s (after {options.warmup_s:g} s warm-up; median reported);"
        f" open loop {options.open_duration_s:g} s at"
        f" {', '.join(f'{f:.0%}' for f in options.open_fractions)} of the median saturation rate",
        f"- **Server**: `qwallet serve --no-demo --workers {options.workers}`"
        + (f" with {options.server_env}" if options.server_env else ""),
        f"- **Correctness**: {'every run passed' if report.ok else 'SOME RUNS ARE VOID'}"
        " (acknowledged transactions present once in their acknowledged state, ledger sums to"
        " zero, no negative balance, `reconcile` clean)",
        "",
    ]
    target_lines = _targets_table(report)
    if target_lines:
        lines += ["## Targets (PostgreSQL)", "", *target_lines, ""]
    for chart in charts:
        lines += [f"![{chart}](bench/{chart})", ""]
    for run in report.runs:
        lines += [f"## {run.target}", ""]
        if run.failure:
            lines += [f"**Run failed**: `{run.failure}`", ""]
        if run.scenarios:
            lines += ["### Saturation (closed loop)", "", *_throughput_table(run), ""]
            lines += ["### Latency (open loop)", "", *_latency_table(run), ""]
        if run.warmup_fps:
            lines += [
                "Warm-up of the fresh server (flows/s per 1 s burst, until the rate stopped"
                " rising): " + ", ".join(_f(v) for v in run.warmup_fps),
                "",
            ]
        if run.peak_rss_mb:
            lines += [
                "Peak RSS per server process: " + ", ".join(f"{v:.0f} MB" for v in run.peak_rss_mb),
                "",
            ]
    lines += _comparison(report)
    # The Growth section comes from ``qwallet bench --stored N``, a separate run: keep it.
    from qwallet.bench.growth_report import METHOD, existing

    kept = existing(output)
    if kept:
        lines += [*kept, ""] if kept[-1] else kept
    lines += [
        "## Method",
        "",
        "- The generator (`qwallet.bench.loadgen`) is a small HTTP/1.1 keep-alive client on raw",
        "  asyncio protocols (uvloop) with prebuilt request bytes, in its own process(es).",
        "- Closed loop: each connection sends its next flow when the previous one is answered.",
        "  Open loop: flow *k* is due at `t0 + k / rate`; latency is measured from that intended",
        "  time (a late send is charged from when it was due; a send up to 1 ms early, allowed",
        "  for timer granularity, from when it was actually sent).",
        "- A *flow* is one request, or two for withdraw → confirm / rollback; the Zipf mix is",
        "  40 % getBalance, 50 % withdraw (then 70 % confirm, 20 % rollback, 10 % left pending)",
        "  and 10 % replays, players drawn Zipf (s = 1.1).",
        "- The ceiling is `pgbench -M prepared` with the same client count running the same",
        "  `wallet_v1_*` functions (`qwallet.bench.pgbench.SCRIPTS`); one pgbench transaction is",
        "  one flow. At the 70 % point the same script also runs open loop (`pgbench -R` at the",
        "  offered rate, latency from each transaction's scheduled start, as pgbench defines it",
        "  under `-R`): the *pgbench alone* rows of the latency tables, the floor of the tail that",
        "  any HTTP layer on this machine adds to.",
        "- CPU per request is the CPU time of the server processes, the generator and the",
        "  PostgreSQL processes of the bench database (psutil), divided by the requests served.",
        "- Correctness is checked after every scenario; a scenario that fails it is void.",
        *METHOD,
        "",
    ]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines), encoding="utf-8")
    return output


__all__ = ["render"]
