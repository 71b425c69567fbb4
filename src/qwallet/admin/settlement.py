"""The console's settlement page (``/admin/settlement``) and its CSV (``/admin/settlement.csv``).

The same daily totals a partner reads from ``GET /partner/settlement``
(``qwallet.service.partner_reports``), for one partner or for every partner, over at most 31
UTC days. Every partner is one indexed query of its own (``ix_transactions_partner_updated``),
so the page costs what those days hold, whatever the history. Read-only: no form here changes
anything, so there is no action and no CSRF token to check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from qwallet.domain.sessions import MS_PER_DAY
from qwallet.service import partner_reports as reports
from qwallet.service.partners import OperatorError

if TYPE_CHECKING:
    from qwallet.admin.console import AdminConsole

Handler = Callable[[Request], Awaitable[Response]]
EPOCH = dt.date(1970, 1, 1)


def _day(text: str, name: str, default: dt.date) -> dt.date:
    if not text:
        return default
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise OperatorError(f"{name} must be a date YYYY-MM-DD (UTC).") from None
    if day < EPOCH:
        raise OperatorError(f"{name} must not be before 1970-01-01.")
    return day


class SettlementPages:
    def __init__(self, console: AdminConsole) -> None:
        self.console = console

    def routes(self, signed_in: Callable[[Handler], Handler]) -> list[BaseRoute]:
        """``signed_in`` is the console's page wrapper (sign-in required, 404/400 pages)."""
        return [
            Route("/settlement", signed_in(self.page)),
            Route("/settlement.csv", signed_in(self.csv)),
        ]

    async def _query(
        self, request: Request
    ) -> tuple[str, dt.date, dt.date, list[tuple[str, reports.DayTotals]]]:
        params = request.query_params
        today = EPOCH + dt.timedelta(days=self.console.clock.now_ms() // MS_PER_DAY)
        first = _day(params.get("from", "")[:20], "From", today)
        last = _day(params.get("to", "")[:20], "To", first)
        if last < first:
            raise OperatorError("To must not be before From.")
        if (last - first).days >= reports.MAX_SETTLEMENT_DAYS:
            raise OperatorError(f"At most {reports.MAX_SETTLEMENT_DAYS} days at a time.")
        partner = params.get("partner", "")[:100]
        found = await reports.partner_ids(self.console.db, partner or None)
        if partner and not found:
            raise OperatorError(f"No partner {partner!r}.")
        lines = [
            (name, entry)
            for name, partner_id in found
            for entry in await reports.settlement(self.console.db, partner_id, first, last)
        ]
        return partner, first, last, lines

    async def page(self, request: Request) -> Response:
        db = self.console.db
        try:
            partner, first, last, lines = await self._query(request)
            error = None
        except OperatorError as problem:
            partner, first, last, lines, error = "", None, None, [], str(problem)
        return self.console.render(
            request,
            "settlement.html",
            status_code=400 if error else 200,
            partner=partner,
            first=first,
            last=last,
            lines=lines,
            error=error,
            partner_names=[name for name, _ in await reports.partner_ids(db)],
            query=request.url.query,
        )

    async def csv(self, request: Request) -> Response:
        partner, first, last, lines = await self._query(request)
        name = f"settlement-{partner or 'all'}-{first.isoformat()}-{last.isoformat()}.csv"
        body = reports.csv_text(
            [entry for _, entry in lines],
            self.console.settings.currency_registry,
            [partner_name for partner_name, _ in lines],
        )
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )


__all__ = ["SettlementPages"]
