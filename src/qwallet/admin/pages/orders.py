"""The console's payment-order pages: the list, one order, redelivery."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import queries
from qwallet.admin.base import ConsoleBase
from qwallet.service import orders_admin
from qwallet.service.partners import OperatorError


class OrderPages(ConsoleBase):
    async def orders(self, request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in orders_admin.STATES:
            raise OperatorError(f"unknown order state {state[:20]!r}")
        after = self._cursor(request)
        rows = await orders_admin.list_orders(
            self.db, state, limit=queries.PAGE_SIZE + 1, cursor=after
        )
        return self.render(
            request,
            "orders.html",
            rows=rows[: queries.PAGE_SIZE],
            state=state,
            states=orders_admin.STATES,
            counts=await orders_admin.counts_by_state(self.db),
            count_cap=orders_admin.COUNT_CAP,
            after=after,
            next_cursor=queries.next_cursor(rows, "id"),
            query={"state": state} if state else {},
        )

    async def order(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        await self._require_order(order_id)
        order, attempts = await orders_admin.order_detail(self.db, order_id)
        return self.render(
            request,
            "order.html",
            order=order,
            attempts=attempts,
            redeliverable=order["state"] in orders_admin.REDELIVERABLE,
        )

    async def redeliver(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        await self._require_order(order_id)
        try:
            await orders_admin.redeliver(self.db, order_id, self._who(request), self.clock.now_ms())
            self.flash(request, "Queued for redelivery.")
        except OperatorError as error:
            self.flash(request, str(error), "error")
        return self.back(f"/admin/orders/{quote(order_id, safe='')}")
