"""``qwallet partners check NAME``: test a studio's payment-callback receiver and Query endpoint.

Registered in the ``partners`` group (``cli/__init__.py``). It prints the table of what the
studio answered against what it must answer and exits 1 on any miss (``--strict``: also on a
skipped row), 2 when it refuses to run (a production partner without ``--query-only``, an
unknown partner, a named order or withdrawal that does not fit). See docs/operator-guide.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from qwallet.cli._common import JsonOption, actor, console, with_store
from qwallet.clock import SystemClock
from qwallet.service.partners import OperatorError
from qwallet.settings import Settings
from qwallet.store.factory import Store
from qwallet.studio_check import (
    CheckRefused,
    CheckResult,
    DataChoice,
    check_partner,
    record_check,
)
from qwallet.studio_check.report import html_page, text_table

OrderHelp = "cpOrderId of a delivered payment order to re-send (default: the latest delivered)."
IdHelp = "mmTransactionId of a withdrawal the studio {what} (default: the latest)."


def check_command(
    name: Annotated[str, typer.Argument(help="The partner (studio) to check.")],
    order: Annotated[str | None, typer.Option("--order", help=OrderHelp)] = None,
    confirmed: Annotated[
        str | None, typer.Option("--confirmed", help=IdHelp.format(what="confirmed"))
    ] = None,
    rolled_back: Annotated[
        str | None, typer.Option("--rolled-back", help=IdHelp.format(what="rolled back"))
    ] = None,
    pending: Annotated[
        str | None, typer.Option("--pending", help=IdHelp.format(what="left pending"))
    ] = None,
    query_only: Annotated[
        bool,
        typer.Option(
            "--query-only",
            help="Send only the read-only Query Withdrawal rows (allowed for production partners).",
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a row was skipped for lack of data.")
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report to this file.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Call the studio's endpoints with test vectors; exit 1 on any miss."""
    settings = Settings.from_env()
    choice = DataChoice(order=order, confirmed=confirmed, rolled_back=rolled_back, pending=pending)

    async def work(store: Store) -> CheckResult:
        clock = SystemClock()
        try:
            result = await check_partner(
                store, settings.currency_registry, clock, name, choice, query_only=query_only
            )
        except CheckRefused as refusal:
            raise OperatorError(str(refusal)) from None
        await record_check(store, actor(), result, clock.now_ms())
        return result

    result = with_store(settings, work)
    if html is not None:
        html.write_text(html_page(result), encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(result.as_json()) + "\n")
    else:
        typer.echo(text_table(result))
        if html is not None:
            console.print(f"HTML report: {html}")
    if not result.passed(strict=strict):
        raise typer.Exit(1)
