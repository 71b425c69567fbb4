"""``qwallet partners faults …`` and ``qwallet partners report``: a sandbox studio's test tools.

Fault rules are set per sandbox partner (``qwallet.service.sandbox_faults``; refused for a
production partner) and the protocol report reads the platform's own records
(``qwallet.service.protocol_report``). Registered under ``partners`` by ``qwallet.cli``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.service import protocol_report, sandbox_faults
from qwallet.settings import Settings
from qwallet.store.factory import Store

faults_app = typer.Typer(
    no_args_is_help=True,
    help="Faults on demand for a sandbox partner's Wallet API calls (never production).",
)

_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
TimeHelp = "A time: ISO 8601 (2026-12-01T10:00:00Z), ago (30m, 2h, 1d) or ms since the epoch."


def parse_time(text: str, now: int) -> int:
    """Milliseconds since the epoch for ``text`` (see ``TimeHelp``)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if relative := _RELATIVE.fullmatch(text):
        return now - int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"not a time: {text!r}. {TimeHelp}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@faults_app.command("add")
def faults_add(
    name: str,
    endpoint: Annotated[
        str, typer.Option(help="The endpoint (withdraw, confirmWithdrawal, …) or '*' for any.")
    ],
    next_calls: Annotated[
        int | None, typer.Option("--next", help="Hit the next N matching calls.")
    ] = None,
    every: Annotated[
        int | None, typer.Option("--every", help="Hit every Kth matching call.")
    ] = None,
    error: Annotated[
        int | None, typer.Option("--error", help="Answer this error code (100 is HTTP 500).")
    ] = None,
    after_commit: Annotated[
        bool, typer.Option("--after-commit", help="With --error: run the call first.")
    ] = False,
    delay_ms: Annotated[
        int | None, typer.Option("--delay-ms", help="Delay the answer by this many ms.")
    ] = None,
    drop: Annotated[
        bool, typer.Option("--drop", help="Run the call, then close without an answer.")
    ] = False,
    expire_session: Annotated[
        bool, typer.Option("--expire-session", help="Expire the call's session now.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a fault rule to the sandbox partner NAME (one of --error, --delay-ms, --drop,
    --expire-session; one of --next, --every)."""
    chosen = [
        action
        for action, given in (
            ("error", error is not None),
            ("delay", delay_ms is not None),
            ("drop", drop),
            ("expire_session", expire_session),
        )
        if given
    ]
    if len(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one of --error, --delay-ms, --drop, --expire-session"
        )
    spec = sandbox_faults.RuleSpec(
        endpoint=endpoint,
        action=chosen[0],
        next_calls=next_calls,
        every_kth=every,
        error_code=error,
        after_commit=after_commit,
        delay_ms=delay_ms,
    )
    settings = Settings.from_env()

    async def work(store: Store) -> dict[str, Any]:
        rule_id = await sandbox_faults.add_rule(
            store, name, spec, operator=actor(), now_ms=now_ms()
        )
        rows = await sandbox_faults.list_rules(store, name)
        return sandbox_faults.rule_json(next(r for r in rows if int(r["id"]) == rule_id))

    created = with_store(settings, work)
    emit(as_json, created, f"rule {created['id']}: {created['description']}")


@faults_app.command("list")
def faults_list(
    name: str,
    include_removed: Annotated[bool, typer.Option("--all", help="Also the removed rules.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The fault rules of partner NAME, with how many calls each matched and hit."""
    settings = Settings.from_env()

    async def work(store: Store) -> list[dict[str, Any]]:
        rows = await sandbox_faults.list_rules(store, name, include_removed=include_removed)
        return [sandbox_faults.rule_json(row) for row in rows]

    rules = with_store(settings, work)
    lines = [
        f"{r['id']}\t{r['description']}\tseen {r['seen']}\thit {r['fired']}"
        + ("\tremoved" if r["removedAtMs"] else "")
        for r in rules
    ]
    emit(as_json, {"partner": name, "rules": rules}, "\n".join(lines) or "no rules")


@faults_app.command("remove")
def faults_remove(name: str, rule_id: int, as_json: JsonOption = False) -> None:
    """Stop rule RULE_ID of partner NAME (kept, with its counters, for the report)."""
    settings = Settings.from_env()

    async def work(store: Store) -> None:
        await sandbox_faults.remove_rule(store, name, rule_id, operator=actor(), now_ms=now_ms())

    with_store(settings, work)
    emit(as_json, {"partner": name, "removed": rule_id}, f"rule {rule_id} removed")


def report_command(
    name: str,
    since: Annotated[str, typer.Option(help=f"Start of the window. {TimeHelp}")] = "1h",
    until: Annotated[str | None, typer.Option(help=f"End of the window (now). {TimeHelp}")] = None,
    as_json: JsonOption = False,
) -> None:
    """The protocol report of partner NAME: a pass/fail verdict per documented rule.

    Exits 1 when a rule fails (so a studio's CI can run it), 0 when every rule passes."""
    settings = Settings.from_env()
    now = now_ms()
    until_ms = now if until is None else parse_time(until, now)
    since_ms = parse_time(since, now)
    if since_ms >= until_ms:
        raise typer.BadParameter("--since must be before --until")

    async def work(store: Store) -> dict[str, Any]:
        return await protocol_report.report(store, name, since_ms, until_ms, now)

    result = with_store(settings, work)
    emit(as_json, result, _human(result))
    if result["verdict"] != "pass":
        raise typer.Exit(1)


def _human(result: dict[str, Any]) -> str:
    summary = result["summary"]
    lines = [
        f"partner {result['partner']}"
        + ("" if result["sandbox"] else " (production: no call log, no faults)"),
        f"calls {result['calls']}, withdrawals {summary['withdrawals']}: confirmed"
        f" {summary['confirmed']}, rolled back {summary['rolledBack']}, pending"
        f" {summary['pending']}, late {summary['late']}; faults injected"
        f" {summary['faultsInjected']}",
    ]
    for rule in result["rules"]:
        lines.append(
            f"{rule['verdict'].upper():4}  {rule['rule']:32} checked {rule['checked']},"
            f" failed {rule['failures']}"
        )
        for example in rule["examples"][:5]:
            lines.append(f"        {example}")
    lines.append(f"verdict: {result['verdict'].upper()}")
    return "\n".join(lines)


def register(partners_app: typer.Typer) -> None:
    """Add ``faults`` and ``report`` to ``qwallet partners``."""
    partners_app.add_typer(faults_app, name="faults")
    partners_app.command("report")(report_command)


__all__ = ["faults_app", "parse_time", "register", "report_command"]
