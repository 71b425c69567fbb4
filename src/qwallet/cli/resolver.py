"""``qwallet resolver``: one pass of the hold resolver (audited as ``resolver.run``), and an
operator's own resolution of one hold (``transaction.resolve``, as in the console)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.clock import SystemClock
from qwallet.resolver import HoldResolver
from qwallet.service import holds
from qwallet.settings import Settings
from qwallet.store.factory import Store

app = typer.Typer(no_args_is_help=True, help="The hold resolver (spec §3).")


@app.command("run-once")
def resolver_run_once(as_json: JsonOption = False) -> None:
    """One pass of the hold resolver: ask partners about overdue withdrawals, apply answers."""
    settings = Settings.from_env()

    async def work(store: Store) -> list[dict[str, Any]]:
        async with HoldResolver(store, settings, SystemClock()) as resolver:
            outcomes, _summary = await holds.run_resolver_pass(
                store, resolver.run_once, operator=actor(), now_ms=now_ms
            )
        return [
            {
                "qwTransactionId": o.qw_transaction_id,
                "mmTransactionId": o.mm_transaction_id,
                "partner": o.partner,
                "partnerStatus": o.resolution.partner_status,
                "action": o.resolution.action,
                "detail": o.resolution.detail,
            }
            for o in outcomes
        ]

    results = with_store(settings, work)
    human = "\n".join(
        f"{r['mmTransactionId']} ({r['partner']}): {r['partnerStatus'] or 'no answer'} -> "
        f"{r['action']}"
        for r in results
    )
    emit(as_json, {"resolutions": results}, human or "no holds due")


@app.command("resolve")
def resolver_resolve(
    qw_transaction_id: str,
    decision: Annotated[
        str,
        typer.Option("--decision", help="confirm or rollback: what the partner would have sent."),
    ],
    reason: Annotated[str, typer.Option(help="Why (mandatory, recorded).")],
    as_json: JsonOption = False,
) -> None:
    """Confirm or roll back one pending transaction by hand (the partner never will)."""
    if decision not in ("confirm", "rollback"):
        raise typer.BadParameter("--decision must be confirm or rollback")
    chosen: Literal["confirm", "rollback"] = "confirm" if decision == "confirm" else "rollback"
    result = with_store(
        Settings.from_env(),
        lambda store: holds.resolve_by_operator(
            store, qw_transaction_id, chosen, reason, operator=actor(), now_ms=now_ms()
        ),
    )
    emit(
        as_json,
        {"qwTransactionId": qw_transaction_id, "action": result.action, "state": result.state},
        f"{qw_transaction_id}: {result.action.replace('_', ' ')} (now {result.state})",
    )
