"""``qwallet db``: the database schema, its monthly partitions, the archive of closed months and
the stored settlement of closed days."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from qwallet.cli._common import JsonOption, actor, console, emit, now_ms, with_store
from qwallet.service import archive, partner_reports, settlement_days
from qwallet.service.partners import OperatorError
from qwallet.settings import Settings
from qwallet.store import migrate
from qwallet.store.factory import Store

app = typer.Typer(no_args_is_help=True, help="Database schema.")


@app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema."""
    migrate.upgrade(Settings.from_env().database_url)
    typer.echo("database is up to date")


@app.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    migrate.current(Settings.from_env().database_url)


@app.command("partitions")
def db_partitions(
    months_ahead: Annotated[
        int, typer.Option("--months-ahead", help="Months after the current one to create.")
    ] = archive.MONTHS_AHEAD,
    as_json: JsonOption = False,
) -> None:
    """Create the monthly partitions of transactions and ledger entries ahead (PostgreSQL;
    serve does it at startup and every hour)."""
    created = with_store(
        Settings.from_env(), lambda store: archive.ensure_partitions(store, now_ms(), months_ahead)
    )
    emit(as_json, {"created": created}, f"{created} partition(s) created")


@app.command("archive")
def db_archive(
    before: Annotated[
        str,
        typer.Option(
            "--before",
            help="YYYY-MM-DD or YYYY-MM: archive the whole months before this date's month.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the exported files and manifests.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Export the closed months before --before (gzip JSON lines, SHA-256 manifest, verified
    checkpoint) and remove them from the database; their ids keep answering."""
    try:
        month = archive.parse_before(before)
    except OperatorError as error:
        raise typer.BadParameter(str(error)) from None
    report = with_store(
        Settings.from_env(),
        lambda store: archive.archive(store, out, month, operator=actor(), now_ms=now_ms()),
    )
    lines = [
        f"{m.month}: {m.transactions} transactions, {m.ledger_entries} ledger entries"
        f" -> {out / m.manifest}"
        for m in report.months
    ]
    human = "\n".join(lines) if lines else f"nothing to archive before {report.before}"
    emit(as_json, report.as_json(), human)


@app.command("verify-archive")
def db_verify_archive(
    manifest: Annotated[Path, typer.Argument(help="An archive-YYYY-MM.json manifest.")],
) -> None:
    """Check an archive's files against its manifest (checksums, row counts)."""
    try:
        found = archive.verify_manifest(manifest)
    except (OperatorError, OSError, ValueError, KeyError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    rows = ", ".join(f"{f['rows']} {f['table']}" for f in found["files"])
    typer.echo(f"{manifest.name}: OK ({rows})")


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _since(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"invalid date {text!r}: expected YYYY-MM-DD") from None


@app.command("settle")
def db_settle(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="YYYY-MM-DD: start at this UTC day (default: each partner's oldest stored"
            " transaction).",
        ),
    ] = None,
    partner: Annotated[
        str | None, typer.Option("--partner", help="Only this partner (default: every one).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Summarize the closed settlement days not stored yet (after upgrading to 0016; serve's
    periodic job does the same a few days at a time). Safe beside running servers."""
    first = _since(since)

    async def run(store: Store) -> tuple[int, int]:
        backlogs = await settlement_days.backlog(store, now_ms(), since=first, partner=partner)
        total = sum(len(item.days) for item in backlogs)
        with Progress(
            "settle",
            BarColumn(),
            MofNCompleteColumn(),
            "days",
            TimeElapsedColumn(),
            console=console,
            disable=as_json or total == 0,
        ) as progress:
            task = progress.add_task("settle", total=total)
            for partner_id, number in settlement_days.in_turn(backlogs):
                await partner_reports.summarize_day(store, partner_id, number)
                progress.advance(task)
        return total, len(backlogs)

    days, partners = with_store(Settings.from_env(), run)
    emit(
        as_json,
        {"days": days, "partners": partners},
        f"{days} closed day(s) of {partners} partner(s) summarized"
        if days
        else "every closed day is summarized already",
    )
