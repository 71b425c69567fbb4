"""The console's reconciliation and audit-log pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import queries
from qwallet.admin.base import ConsoleBase
from qwallet.service import audit, reconcile


class AuditPages(ConsoleBase):
    async def reconcile_page(self, request: Request) -> Response:
        return self.render(request, "reconcile.html", report=None)

    async def run_reconcile(self, request: Request) -> Response:
        report = await reconcile.run_reconcile(
            self.db, operator=self._who(request), now_ms=self.clock.now_ms()
        )
        return self.render(request, "reconcile.html", report=report)

    async def audit_page(self, request: Request) -> Response:
        params = request.query_params
        page = self._page_number(request)
        who, action = params.get("operator") or None, params.get("action") or None
        rows = await audit.entries(
            self.db,
            operator=who,
            action=action,
            limit=queries.PAGE_SIZE + 1,
            offset=page * queries.PAGE_SIZE,
        )
        query = {k: v for k, v in {"operator": who, "action": action}.items() if v}
        return self.render(
            request,
            "audit.html",
            rows=rows[: queries.PAGE_SIZE],
            page=page,
            has_next=len(rows) > queries.PAGE_SIZE,
            who=who or "",
            action=action or "",
            query=query,
        )
