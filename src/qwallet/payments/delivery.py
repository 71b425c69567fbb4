"""Delivery of paid orders to the partner's callback URL, with bounded retries (spec §2.3).

The queue is the ``payment_orders`` table itself: an order is due when ``state = 'paid'`` and
``next_delivery_at_ms <= now``. Several server processes may run the worker at once; each claims
an order by moving ``next_delivery_at_ms`` forward by a lease with a conditional UPDATE that only
succeeds against the value it read (compare-and-set), so exactly one process sends an attempt.
The attempt's result is written with the same condition, so a process whose lease was taken over
(or whose order was redelivered meanwhile) records its attempt but does not move the order.

After attempt *n* of a round fails the order is retried ``schedule_s[n-1]`` later (the last
value repeats); after ``max_attempts`` it is ``failed``. The operator action
``qwallet.service.orders_admin.redeliver`` starts a new round.
Every attempt is a ``payment_attempts`` row; ``attempt`` numbers all attempts of the order.

Before sending, the attempt is refused (recorded with its error, retried like any failure) when
the partner's callback URL is plain ``http`` and the operator did not allow that for the partner
(``allow_http_callback``), or when the order was paid by a sandbox method and the partner is not
a sandbox partner: a sandbox "payment" is never announced to a production partner.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx

from qwallet.clock import Clock
from qwallet.domain.money import CurrencyRegistry, format_amount
from qwallet.domain.payment_methods import SANDBOX_METHODS
from qwallet.monitoring import instruments
from qwallet.payments.callback import build_callback, is_acknowledged
from qwallet.payments.orders import Order
from qwallet.store.sql import Row, SqlDatabase

logger = logging.getLogger("qwallet.payments.delivery")

EXCERPT_CHARS = 200
DEFAULT_SCHEDULE_S = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    max_attempts: int = 8
    timeout_s: float = 10.0
    lease_s: float = 60.0
    batch_size: int = 20

    def __post_init__(self) -> None:
        assert self.schedule_s and all(delay > 0 for delay in self.schedule_s)
        assert self.max_attempts >= 1 and self.batch_size >= 1
        # The lease must outlive the HTTP call, or a second process could send the same attempt.
        assert self.lease_s > self.timeout_s > 0

    def delay_ms(self, attempt_in_round: int) -> int:
        index = min(attempt_in_round, len(self.schedule_s)) - 1
        return int(self.schedule_s[index] * 1000)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    http_status: int | None
    excerpt: str | None
    error: str | None
    delivered: bool


class Deliverer:
    """Sends due callbacks. ``client`` is an ``httpx.AsyncClient`` (tests inject a transport)."""

    def __init__(
        self,
        db: SqlDatabase,
        clock: Clock,
        client: httpx.AsyncClient,
        policy: DeliveryPolicy,
        currencies: CurrencyRegistry,
    ) -> None:
        self.db, self.clock, self.client, self.policy = db, clock, client, policy
        self.currencies = currencies

    async def deliver_due(self) -> int:
        """Attempt every due order once (concurrently, one batch); return how many were tried."""
        now_ms = self.clock.now_ms()
        async with self.db.transaction() as tx:
            rows = await tx.fetch(
                "SELECT * FROM payment_orders WHERE state = 'paid' AND next_delivery_at_ms <= $1"
                " ORDER BY next_delivery_at_ms LIMIT $2",
                now_ms,
                self.policy.batch_size,
            )
        orders = [Order.from_row(row) for row in rows]
        results = await asyncio.gather(*(self._claim_and_send(order) for order in orders))
        return sum(results)

    async def _claim_and_send(self, order: Order) -> int:
        now_ms = self.clock.now_ms()
        lease_until_ms = now_ms + int(self.policy.lease_s * 1000)
        async with self.db.transaction() as tx:
            claimed = await tx.execute(
                "UPDATE payment_orders SET next_delivery_at_ms = $1"
                " WHERE id = $2 AND state = 'paid' AND next_delivery_at_ms = $3",
                lease_until_ms,
                order.id,
                order.next_delivery_at_ms,
            )
            partner = await tx.fetchrow(
                "SELECT callback_url, callback_secret, callback_format, allow_http_callback,"
                " sandbox FROM partners WHERE id = $1",
                order.partner_id,
            )
        if claimed != 1:
            return 0  # another process has it
        assert partner is not None
        try:
            result = await self._send(order, partner, now_ms)
        except Exception as error:  # never lose the lease bookkeeping to a surprise
            logger.exception("payment callback for order %s failed unexpectedly", order.id)
            result = AttemptResult(None, None, f"unexpected: {error!r}"[:EXCERPT_CHARS], False)
        await self._record(order, result, lease_until_ms)
        return 1

    async def _send(self, order: Order, partner: Row, now_ms: int) -> AttemptResult:
        url, secret = partner["callback_url"], partner["callback_secret"]
        if not isinstance(url, str) or not url or not isinstance(secret, str) or not secret:
            return AttemptResult(None, None, "partner has no callback URL or secret", False)
        refusal = self._refusal(order, partner, url)
        if refusal is not None:
            return AttemptResult(None, None, refusal, False)
        currency = self.currencies.get(order.currency)
        if currency is None:
            return AttemptResult(None, None, f"currency {order.currency} is not configured", False)
        callback = build_callback(
            uid=order.player_id,
            server_id=order.server_id,
            cp_order_id=order.cp_order_id,
            product_id=order.product_id,
            product_price=order.product_price,
            ext_params=order.ext_params,
            amount=format_amount(order.amount_minor, currency),
            currency_code=order.currency,
            provider=str(order.method),
            ts_ms=now_ms,
            secret=secret,
            body_format=str(partner["callback_format"] or "form"),
        )
        try:
            response = await self.client.post(
                url, content=callback.body, headers=callback.headers, timeout=self.policy.timeout_s
            )
        except httpx.HTTPError as error:
            return AttemptResult(None, None, f"{type(error).__name__}: {error}"[:200], False)
        body = response.content[: 4 * 1024]
        return AttemptResult(
            response.status_code,
            body.decode("utf-8", "replace")[:EXCERPT_CHARS],
            None,
            is_acknowledged(response.status_code, body),
        )

    @staticmethod
    def _refusal(order: Order, partner: Row, url: str) -> str | None:
        if url.lower().startswith("http://") and not partner["allow_http_callback"]:
            return "refused: plain-http callback URL not allowed for this partner (https needed)"
        if order.method in SANDBOX_METHODS and not partner["sandbox"]:
            return f"refused: paid by {order.method} but the partner is not a sandbox partner"
        return None

    async def _record(self, order: Order, result: AttemptResult, lease_until_ms: int) -> None:
        now_ms = self.clock.now_ms()
        in_round = order.delivery_attempts + 1
        if result.delivered:
            outcome, state, next_ms = "delivered", "delivered", None
        elif in_round >= self.policy.max_attempts:
            outcome, state, next_ms = "failed", "failed", None
        else:
            outcome, state, next_ms = "retry", "paid", now_ms + self.policy.delay_ms(in_round)
        async with self.db.transaction() as tx:
            last = await tx.fetchrow(
                "SELECT COALESCE(MAX(attempt), 0) AS n FROM payment_attempts WHERE order_id = $1",
                order.id,
            )
            assert last is not None
            await tx.execute(
                "INSERT INTO payment_attempts (order_id, attempt, at_ms, http_status,"
                " response_excerpt, error, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                order.id,
                int(last["n"]) + 1,
                now_ms,
                result.http_status,
                result.excerpt,
                result.error,
                outcome,
            )
            await tx.execute(
                "UPDATE payment_orders SET state = $1, next_delivery_at_ms = $2,"
                " delivery_attempts = delivery_attempts + 1, updated_at_ms = $3,"
                " delivered_at_ms = CASE WHEN $1 = 'delivered' THEN $3 ELSE delivered_at_ms END"
                " WHERE id = $4 AND state = 'paid' AND next_delivery_at_ms = $5",
                state,
                next_ms,
                now_ms,
                order.id,
                lease_until_ms,
            )
        instruments.payment_delivery(outcome)
        log = logger.info if result.delivered else logger.warning
        log(
            "payment callback %s for order %s (%s): status=%s error=%s",
            outcome,
            order.id,
            order.cp_order_id,
            result.http_status,
            result.error,
        )
