"""The console's sandbox page of one partner: its fault rules, its recent calls with the fault
each one met, and its protocol report (``/admin/partners/{name}/sandbox``).

The routes use the console's plumbing (sign-in, CSRF, rendering, audit actor) and the same use
cases as the CLI and the operator API (``qwallet.service.sandbox_faults``,
``qwallet.service.protocol_report``). A production partner's page says so and offers no form;
a rule posted for it anyway is refused by the use case, and nothing is written.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from qwallet.admin import queries
from qwallet.service import protocol_report, sandbox_faults
from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row, SqlDatabase

if TYPE_CHECKING:
    from qwallet.admin.console import AdminConsole

RECENT_CALLS = 200
WINDOWS_MS = {"15m": 15 * 60_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000}
DEFAULT_WINDOW = "1h"


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise OperatorError(f"not a whole number: {text.strip()[:20]!r}") from None


class SandboxPages:
    def __init__(self, console: AdminConsole) -> None:
        self.console = console

    def routes(self) -> list[BaseRoute]:
        page, action = self.console.page, self.console.action
        return [
            Route("/partners/{name}/sandbox", page(self.sandbox_page)),
            Route("/partners/{name}/sandbox/report.json", page(self.report_json)),
            Route("/partners/{name}/sandbox/rules", action(self.add_rule), methods=["POST"]),
            Route(
                "/partners/{name}/sandbox/rules/{rule_id:int}/remove",
                action(self.remove_rule),
                methods=["POST"],
            ),
        ]

    def _path(self, name: str) -> str:
        return f"/admin/partners/{quote(name, safe='')}/sandbox"

    def _window(self, request: Request) -> str:
        window = request.query_params.get("window", DEFAULT_WINDOW)
        return window if window in WINDOWS_MS else DEFAULT_WINDOW

    async def sandbox_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        db = self.console.db
        partner_id, sandbox = await sandbox_faults.partner_id_of(db, name)
        window = self._window(request)
        now_ms = self.console.clock.now_ms()
        rules = await sandbox_faults.list_rules(db, name, include_removed=True)
        calls = (
            await sandbox_faults.calls(
                db,
                partner_id,
                now_ms - WINDOWS_MS[window],
                now_ms + 1,
                limit=RECENT_CALLS,
                newest_first=True,
            )
            if sandbox
            else []
        )
        report = await protocol_report.report(
            db, name, now_ms - WINDOWS_MS[window], now_ms + 1, now_ms
        )
        return self.console.render(
            request,
            "sandbox.html",
            partner=name,
            sandbox=sandbox,
            rules=[sandbox_faults.rule_json(row) for row in rules],
            calls=calls,
            report=report,
            window=window,
            windows=list(WINDOWS_MS),
            endpoints=sandbox_faults.ENDPOINTS,
            codes=[int(code) for code in sandbox_faults.INJECTABLE_CODES],
            max_delay_ms=sandbox_faults.MAX_DELAY_MS,
        )

    async def report_json(self, request: Request) -> Response:
        name = request.path_params["name"]
        now_ms = self.console.clock.now_ms()
        since_ms = now_ms - WINDOWS_MS[self._window(request)]
        report = await protocol_report.report(self.console.db, name, since_ms, now_ms + 1, now_ms)
        return Response(
            json.dumps(report, indent=1),
            media_type="application/json",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def add_rule(self, request: Request) -> Response:
        name = request.path_params["name"]
        form = await self.console.form(request)
        back = self.console.back(self._path(name))
        action = form.get("action", "")
        mode, count = form.get("mode", ""), form.get("count", "")
        try:
            number = _int_or_none(count)
            spec = sandbox_faults.RuleSpec(
                endpoint=form.get("endpoint", ""),
                action=action,
                next_calls=number if mode == "next" else None,
                every_kth=number if mode == "every" else None,
                error_code=_int_or_none(form.get("error_code")) if action == "error" else None,
                after_commit=action == "error" and form.get("after_commit") == "1",
                delay_ms=_int_or_none(form.get("delay_ms")) if action == "delay" else None,
            )
            rule_id = await sandbox_faults.add_rule(
                self.console.db,
                name,
                spec,
                operator=self.console.who(request),
                now_ms=self.console.clock.now_ms(),
            )
        except OperatorError as error:
            self.console.flash(request, f"Rule not added: {error}.", "error")
            return back
        self.console.flash(
            request,
            f"Rule {rule_id} added: {sandbox_faults.describe(sandbox_faults.spec_row(spec))}.",
        )
        return back

    async def remove_rule(self, request: Request) -> Response:
        name = request.path_params["name"]
        rule_id = int(request.path_params["rule_id"])
        try:
            await sandbox_faults.remove_rule(
                self.console.db,
                name,
                rule_id,
                operator=self.console.who(request),
                now_ms=self.console.clock.now_ms(),
            )
        except OperatorError as error:
            self.console.flash(request, f"{error}.", "error")
        else:
            self.console.flash(request, f"Rule {rule_id} removed.")
        return self.console.back(self._path(name))


async def calls_of_transaction(db: SqlDatabase, transaction: Row) -> list[Row]:
    """The logged calls of one transaction (its partner and id), each with the fault it met:
    shown on the console's transaction page. Empty for production partners (never logged)."""
    if transaction.get("kind") not in ("withdrawal", "deposit"):
        return []
    partner_id = await queries.transaction_partner_id(db, str(transaction["qw_transaction_id"]))
    if partner_id is None:
        return []
    endpoints = (
        ("withdraw", "confirmWithdrawal", "rollbackWithdrawal")
        if transaction["kind"] == "withdrawal"
        else ("deposit", "confirmDeposit", "rollbackDeposit")
    )
    calls = await sandbox_faults.calls(
        db,
        partner_id,
        0,
        2**62,
        mm_transaction_id=str(transaction["mm_transaction_id"]),
        limit=RECENT_CALLS,
    )
    return [call for call in calls if call["endpoint"] in endpoints]


__all__ = ["SandboxPages", "calls_of_transaction"]
