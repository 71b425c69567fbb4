"""The console's transaction pages: the list, one transaction, resolving a hold by hand."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import queries
from qwallet.admin.base import ConsoleBase
from qwallet.admin.sandbox import calls_of_transaction
from qwallet.service import holds
from qwallet.service.partners import OperatorError


class TransactionPages(ConsoleBase):
    async def transactions(self, request: Request) -> Response:
        params = request.query_params
        filters = queries.TransactionFilter(
            **{
                name: params.get(name, "")[:100]
                for name in ("partner", "player", "state", "kind", "date_from", "date_to", "mm_id")
            }
        )
        after = self._cursor(request)
        try:
            rows = await queries.transactions(self.db, filters, after)
            error = None
        except OperatorError as problem:
            rows, error = [], str(problem)
        query = {k: v for k, v in vars(filters).items() if v}
        return self.render(
            request,
            "transactions.html",
            rows=rows[: queries.PAGE_SIZE],
            filters=filters,
            error=error,
            after=after,
            next_cursor=queries.next_cursor(rows, "qw_transaction_id"),
            query=query,
            partner_names=await queries.partner_names(self.db),
            states=queries.TRANSACTION_STATES,
            kinds=queries.KINDS,
        )

    async def transaction(self, request: Request) -> Response:
        qw_id = request.path_params["qw_id"]
        await self._require_transaction(qw_id)
        row, entries = await queries.transaction_detail(self.db, qw_id)
        resolutions = await holds.resolutions(self.db, qw_transaction_id=qw_id, limit=100)
        overdue = row["created_at_ms"] <= self.clock.now_ms() - self.settings.hold_window_s * 1000
        return self.render(
            request,
            "transaction.html",
            tx=row,
            entries=entries,
            resolutions=resolutions,
            overdue=overdue,
            sandbox_calls=await calls_of_transaction(self.db, row),
        )

    async def resolve(self, request: Request) -> Response:
        qw_id = request.path_params["qw_id"]
        await self._require_transaction(qw_id)
        form = await self._form(request)
        decision, reason = form.get("decision", ""), form.get("reason", "")
        back = self.back(f"/admin/transactions/{quote(qw_id, safe='')}")
        if decision not in ("confirm", "rollback") or not reason:
            self.flash(request, "Choose confirm or roll back, and give a reason.", "error")
            return back
        result = await holds.resolve_by_operator(
            self.db,
            qw_id,
            "confirm" if decision == "confirm" else "rollback",
            reason,
            operator=self._who(request),
            now_ms=self.clock.now_ms(),
        )
        self.flash(request, f"Resolution: {result.action.replace('_', ' ')}.")
        return back
