"""Payment orders seen from the admin console: lists, details with delivery attempts, redeliver.

Redelivery puts an order back in the delivery worker's queue (state ``paid``, due now); the
worker sends the callback again and the partner de-duplicates by ``cpOrderId`` (spec §2.3).
"""

from __future__ import annotations

import json

from qwallet.service import capped
from qwallet.service.keyset import TimeCursor
from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row, SqlDatabase

STATES = ("created", "paying", "paid", "delivered", "failed", "declined")
REDELIVERABLE = ("delivered", "failed")


COUNT_CAP = capped.COUNT_CAP


async def counts_by_state(db: SqlDatabase) -> dict[str, int]:
    """Orders per state, each counted up to ``COUNT_CAP + 1`` (shown as "10000+").

    ``COUNT(*) … GROUP BY state`` read every order ever made (515 ms at 1 M orders). Each count
    here is a range of ``ix_payment_orders_state_created`` stopped after ``COUNT_CAP + 1``
    rows (``capped.capped_count``): exact for the backlog states, bounded for ``delivered``
    however many are stored.
    """
    counts: dict[str, int] = {}
    async with db.transaction() as tx:
        for state in STATES:
            n = await capped.capped_count(
                tx, "FROM payment_orders WHERE state = $1", "created_at_ms", state
            )
            if n:
                counts[state] = n
    return counts


async def list_orders(
    db: SqlDatabase, state: str | None, *, limit: int = 50, cursor: str | None = None
) -> list[Row]:
    """Newest first, ``limit`` orders after ``cursor`` (``keyset.TimeCursor`` on created time
    and id). Cost: a range of ``ix_payment_orders_created`` (or ``…_state_created`` with a
    state), the page's rows whatever the number of orders stored."""
    after = TimeCursor.parse(cursor)
    args: list[object] = [limit]
    where = ""
    if state is not None:
        args.append(state)
        where = " WHERE o.state = $2"
    if after is not None:
        bound = after.where("o.created_at_ms", "o.id", len(args) + 1)
        where += (" AND " if where else " WHERE ") + bound
        args.extend([after.at_ms, after.key])
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT o.id, o.cp_order_id, o.player_id, o.product_id, o.product_price,"
            " o.amount_minor, o.currency, o.state, o.method, o.delivery_attempts,"
            " o.created_at_ms, o.updated_at_ms, p.name AS partner"
            f" FROM payment_orders o JOIN partners p ON p.id = o.partner_id{where}"
            " ORDER BY o.created_at_ms DESC, o.id DESC LIMIT $1",
            *args,
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
    """Queue the callback again (operator action): a delivered or failed order starts a new
    round of attempts now (the delivery worker of ``qwallet.payments`` sends it); the partner
    de-duplicates by ``cpOrderId``. Audited in the same transaction."""
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT state FROM payment_orders WHERE id = $1", order_id)
        if row is None:
            raise OperatorError(f"No payment order {order_id}.")
        changed = await tx.execute(
            "UPDATE payment_orders SET state = 'paid', next_delivery_at_ms = $1,"
            " delivery_attempts = 0, updated_at_ms = $1"
            " WHERE id = $2 AND state IN ('delivered', 'failed')",
            now_ms,
            order_id,
        )
        if changed != 1:
            raise OperatorError(
                f"Order is {row['state']}; only delivered or failed orders can be redelivered."
            )
        await tx.execute(
            "INSERT INTO audit_log (at_ms, operator, action, target, details)"
            " VALUES ($1, $2, 'order.redeliver', $3, $4)",
            now_ms,
            operator,
            order_id,
            json.dumps({"previousState": row["state"]}),
        )
