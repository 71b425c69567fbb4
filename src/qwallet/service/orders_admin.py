"""Payment orders seen from the admin console: lists, details with delivery attempts, redeliver.

Redelivery puts an order back in the delivery worker's queue (state ``paid``, due now); the
worker sends the callback again and the partner de-duplicates by ``cpOrderId`` (spec §2.3).
"""

from __future__ import annotations

from qwallet.payments import delivery
from qwallet.payments.errors import PaymentError
from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row, SqlDatabase

STATES = ("created", "paying", "paid", "delivered", "failed", "declined")
REDELIVERABLE = ("delivered", "failed")


async def counts_by_state(db: SqlDatabase) -> dict[str, int]:
    async with db.transaction() as tx:
        rows = await tx.fetch("SELECT state, COUNT(*) AS n FROM payment_orders GROUP BY state")
    return {str(row["state"]): int(row["n"]) for row in rows}


async def list_orders(
    db: SqlDatabase, state: str | None, *, limit: int = 50, offset: int = 0
) -> list[Row]:
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT o.id, o.cp_order_id, o.player_id, o.product_id, o.product_price,"
            " o.amount_minor, o.currency, o.state, o.method, o.delivery_attempts,"
            " o.created_at_ms, o.updated_at_ms, p.name AS partner"
            " FROM payment_orders o JOIN partners p ON p.id = o.partner_id"
            " WHERE (CAST($1 AS TEXT) IS NULL OR o.state = $1)"
            " ORDER BY o.created_at_ms DESC, o.id LIMIT $2 OFFSET $3",
            state,
            limit,
            offset,
        )


async def order_detail(db: SqlDatabase, order_id: str) -> tuple[Row, list[Row]]:
    async with db.transaction() as tx:
        order = await tx.fetchrow(
            "SELECT o.*, p.name AS partner FROM payment_orders o"
            " JOIN partners p ON p.id = o.partner_id WHERE o.id = $1",
            order_id,
        )
        if order is None:
            raise OperatorError(f"no payment order {order_id}")
        attempts = await tx.fetch(
            "SELECT attempt, at_ms, http_status, response_excerpt, error, outcome"
            " FROM payment_attempts WHERE order_id = $1 ORDER BY attempt, id",
            order_id,
        )
    return order, attempts


async def redeliver(db: SqlDatabase, order_id: str, operator: str, now_ms: int) -> None:
    """Queue the callback again (see ``qwallet.payments.delivery.redeliver``), for the console."""
    try:
        await delivery.redeliver(db, order_id, operator, now_ms)
    except PaymentError as error:
        raise OperatorError(str(error)) from None
