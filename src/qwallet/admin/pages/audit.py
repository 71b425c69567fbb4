"""The console's reconciliation and audit-log pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import queries
from qwallet.admin.base import ConsoleBase
from qwallet.service import audit, reconcile
from qwallet.service.keyset import next_id_cursor


class AuditPages(ConsoleBase):
    async def reconcile_page(self, request: Request) -> Response:
        return self.render(
            request,
            "reconcile.html",
            report=None,
            checkpoint=await reconcile.last_checkpoint(self.db),
        )

    async def run_reconcile(self, request: Request) -> Response:
        # The same run as ``qwallet reconcile`` (``--full`` when the form asks for it).
        form = await self._form(request)
        report = await reconcile.run_reconcile(
            self.db,
            operator=self._who(request),
            now_ms=self.clock.now_ms(),
            full=form.get("mode") == "full",
        )
        return self.render(
            request,
            "reconcile.html",
            report=report,
            checkpoint=await reconcile.last_checkpoint(self.db),
        )

    async def audit_page(self, request: Request) -> Response:
        params = request.query_params
        who, action = params.get("operator") or None, params.get("action") or None
        rows = await audit.entries(
            self.db,
            operator=who,
            action=action,
            limit=queries.PAGE_SIZE + 1,
            before_id=self._id_cursor(request),
        )
        query = {k: v for k, v in {"operator": who, "action": action}.items() if v}
        return self.render(
            request,
            "audit.html",
            rows=rows[: queries.PAGE_SIZE],
            after=self._cursor(request),
            next_cursor=next_id_cursor(rows, queries.PAGE_SIZE),
            who=who or "",
            action=action or "",
            query=query,
        )
