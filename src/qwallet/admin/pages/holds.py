"""The console's holds page: overdue holds, the resolver's log, a resolver pass on demand."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import queries
from qwallet.admin.base import ConsoleBase
from qwallet.service import holds
from qwallet.service.keyset import next_id_cursor


class HoldPages(ConsoleBase):
    async def holds_page(self, request: Request) -> Response:
        from qwallet.domain.transactions import Kind

        cutoff_ms = self.clock.now_ms() - self.settings.hold_window_s * 1000
        after = self._cursor(request)
        log = await holds.resolutions(
            self.db, limit=queries.PAGE_SIZE + 1, before_id=self._id_cursor(request)
        )
        return self.render(
            request,
            "holds.html",
            withdrawals=await holds.overdue(self.db, Kind.WITHDRAWAL, cutoff_ms, 200),
            deposits=await holds.overdue(self.db, Kind.DEPOSIT, cutoff_ms, 200),
            log=log[: queries.PAGE_SIZE],
            after=after,
            next_cursor=next_id_cursor(log, queries.PAGE_SIZE),
            query={},
            window_h=self.settings.hold_window_s / 3600,
        )

    async def run_resolver(self, request: Request) -> Response:
        if self.resolver_pass is None:
            raise HTTPException(503, "The hold resolver is not available in this process.")
        summary = await self.resolver_pass(self.db, self._who(request))
        text = ", ".join(f"{n} {action.replace('_', ' ')}" for action, n in summary.items())
        self.flash(request, f"Resolver pass: {text or 'nothing due'}.")
        return self.back("/admin/holds")
