"""The console's reconciliation and audit-log pages."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import queries
from qwallet.admin.base import ConsoleBase
from qwallet.service import audit, reconcile, reconcile_jobs
from qwallet.service.keyset import next_id_cursor
from qwallet.service.partners import OperatorError


class AuditPages(ConsoleBase):
    async def reconcile_page(self, request: Request) -> Response:
        return await self._reconcile_view(request)

    async def run_reconcile(self, request: Request) -> Response:
        # Starts the same run as ``qwallet reconcile`` (``--full`` when the form asks for it)
        # as a background job of this process; the page follows it (any process can show it).
        form = await self._form(request)
        try:
            job = await reconcile_jobs.start(
                self.db,
                operator=self._who(request),
                mode=form.get("mode") or "since",
                now_ms=self.clock.now_ms(),
            )
        except reconcile_jobs.ReconcileBusy as busy:
            return await self._reconcile_view(request, 409, error=str(busy))
        except OperatorError as refused:
            return await self._reconcile_view(request, 400, error=str(refused))
        task = asyncio.create_task(
            reconcile_jobs.run(self.db, job, self.clock.now_ms), name=f"qwallet-reconcile-{job.id}"
        )
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return self.back("/admin/reconcile")

    async def _reconcile_view(
        self, request: Request, status_code: int = 200, error: str | None = None
    ) -> Response:
        return self.render(
            request,
            "reconcile.html",
            status_code,
            job=await reconcile_jobs.current(self.db, self.clock.now_ms()),
            checkpoint=await reconcile.last_checkpoint(self.db),
            error=error,
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
