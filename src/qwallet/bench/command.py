"""``qwallet bench``: the Typer command. Imports the benchmark lazily (it needs ``.[bench]``)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)

SCENARIO_HELP = (
    "Comma-separated: balance, withdraw, withdraw_confirm, withdraw_rollback, replay,"
    " hot_wallet, zipf_mix (default: all)."
)


def bench_command(
    players: Annotated[int | None, typer.Option(help="Funded wallets (default 100,000).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 2,
    connections: Annotated[
        int | None, typer.Option(min=1, max=1024, help="Concurrent connections (default 32).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds per closed-loop repetition (default 8).")
    ] = None,
    repetitions: Annotated[int | None, typer.Option(min=1, help="Closed-loop runs.")] = None,
    open_duration: Annotated[
        float | None, typer.Option(help="Seconds per open-loop rate (default 8).")
    ] = None,
    scenarios: Annotated[str | None, typer.Option(help=SCENARIO_HELP)] = None,
    generators: Annotated[int, typer.Option(min=1, max=16, help="Generator processes.")] = 1,
    pool_max: Annotated[
        int | None, typer.Option(help="QWALLET_PG_POOL_MAX for the server (default its own).")
    ] = None,
    pg_url: Annotated[
        str | None,
        typer.Option(help="Admin URL of the PostgreSQL server (env QWALLET_BENCH_PG_URL)."),
    ] = None,
    sqlite: Annotated[
        bool, typer.Option("--sqlite/--no-sqlite", help="Also run on the embedded SQLite.")
    ] = False,
    postgres: Annotated[
        bool, typer.Option("--postgres/--no-postgres", help="Run on PostgreSQL.")
    ] = True,
    reference: Annotated[
        bool,
        typer.Option("--reference/--no-reference", help="Measure bench/fastapi_reference too."),
    ] = True,
    short: Annotated[
        bool, typer.Option("--short", help="CI smoke run, under two minutes.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the load generator's choices.")] = 1,
    output: Annotated[
        Path, typer.Option(help="Markdown report to (re)write; charts go beside it in bench/.")
    ] = Path("docs/benchmarks.md"),
    as_json: Annotated[bool, typer.Option("--json", help="Also print a JSON summary.")] = False,
    stored: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Growth run: measure the scenarios (default withdraw, withdraw_confirm) on the"
            " empty database, preload this many completed transactions, measure again; writes"
            " the Growth section of the report.",
        ),
    ] = None,
    rebuild_indexes: Annotated[
        bool,
        typer.Option(
            "--rebuild-indexes/--keep-indexes",
            help="Growth run: drop the transaction and ledger indexes for the preload and build"
            " them after it (fast, compact), or keep them (grown by inserts, slow at large N).",
        ),
    ] = True,
    untimed_reconcile: Annotated[
        bool,
        typer.Option(
            "--untimed-reconcile/--no-untimed-reconcile",
            help="Growth run: when reconcile hits the statement timeout, run it again without"
            " (proves the preload consistent; minutes at tens of millions).",
        ),
    ] = True,
    preload_budget: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Growth run: start no preload chunk after this many seconds; the report says"
            " how many transactions were reached (the largest N that fits a time box).",
        ),
    ] = None,
) -> None:
    """Benchmark the Wallet API: saturation, open-loop latency, the pgbench ceiling, correctness."""
    try:
        from qwallet.bench import report as report_module
        from qwallet.bench.growth import GROWTH_SCENARIOS
        from qwallet.bench.runner import DEFAULT_PG_URL, BenchOptions, run_bench
    except ImportError as error:
        console.print(f"[red]error:[/red] {error}; install the extra: pip install -e '.[bench]'")
        raise typer.Exit(2) from None

    chosen = {
        "players": players,
        "connections": connections,
        "duration_s": duration,
        "repetitions": repetitions,
        "open_duration_s": open_duration,
    }
    overrides: dict[str, object] = {k: v for k, v in chosen.items() if v is not None}
    if scenarios:
        overrides["scenarios"] = tuple(s.strip() for s in scenarios.split(",") if s.strip())
    overrides.update(
        workers=workers,
        generators=generators,
        pool_max=pool_max,
        pg_url=pg_url or os.environ.get("QWALLET_BENCH_PG_URL", DEFAULT_PG_URL),
        sqlite=sqlite,
        postgres=postgres,
        reference=reference,
        seed=seed,
    )
    if stored is not None:
        overrides.setdefault("scenarios", GROWTH_SCENARIOS)
        overrides["reference"] = False
    options = BenchOptions.short(**overrides) if short else BenchOptions(**overrides)  # type: ignore[arg-type]
    if stored is not None:
        _growth(
            options,
            stored,
            output,
            as_json=as_json,
            rebuild_indexes=rebuild_indexes,
            untimed_reconcile=untimed_reconcile,
            preload_budget_s=preload_budget,
        )
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("starting", total=1.0)

        def show(text: str, done: float) -> None:
            progress.update(task, description=text, completed=done)
            progress.console.print(f"  {text}")

        try:
            result = run_bench(options, show)
        except KeyboardInterrupt:
            console.print("interrupted: the servers were stopped and the bench database dropped")
            raise typer.Exit(130) from None
    notes_path = Path(__file__).with_name("notes.md")
    notes = notes_path.read_text(encoding="utf-8") if notes_path.exists() else ""
    written = report_module.render(result, output, notes)
    console.print(f"report written to {written}")
    if as_json:
        summary = {
            "ok": result.ok,
            "runs": {
                run.target: {
                    "failure": run.failure,
                    "peakRssMb": run.peak_rss_mb,
                    "scenarios": {
                        s.scenario: {
                            "flowsPerS": round(s.median_fps, 1),
                            "requestsPerS": round(s.median_rps, 1),
                            "pgbenchTps": s.ceiling.tps if s.ceiling else None,
                            "errors": s.errors,
                            "ok": s.verdict.ok if s.verdict else None,
                        }
                        for s in run.scenarios
                    },
                }
                for run in result.runs
            },
        }
        sys.stdout.write(json.dumps(summary) + "\n")
    if not result.ok:
        console.print("[red]correctness check failed: the run is void[/red]")
        raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _growth(
    options: Any,
    stored: int,
    output: Path,
    *,
    as_json: bool,
    rebuild_indexes: bool,
    untimed_reconcile: bool,
    preload_budget_s: float | None,
) -> None:
    from qwallet.bench import growth, growth_report

    command = "qwallet " + shlex.join(["bench", *sys.argv[2:]])
    with _progress() as progress:
        task = progress.add_task("starting", total=1.0)

        def show(text: str, done: float) -> None:
            progress.update(task, description=text, completed=done)
            # The preload reports every chunk: print only the steps, not each chunk.
            if not text.startswith("preloading:") or done >= 1.0:
                progress.console.print(f"  {text}")

        try:
            result = growth.run_growth(
                options,
                stored,
                command,
                show,
                rebuild_indexes=rebuild_indexes,
                untimed_reconcile=untimed_reconcile,
                preload_budget_s=preload_budget_s,
            )
        except growth.NotEnoughDisk as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted: the server was stopped and the bench database dropped")
            raise typer.Exit(130) from None
    written = growth_report.splice(output, growth_report.section(result))
    console.print(f"growth section written to {written}")
    if as_json:
        sys.stdout.write(json.dumps(growth.summary(result)) + "\n")
    if not result.ok:
        console.print("[red]correctness check failed: the growth run is void[/red]")
        raise typer.Exit(1)


__all__ = ["bench_command"]
