"""Payment orders (spec §2.2): one per partner and ``cpOrderId``, owned by one player.

States::

    created ──start──► paying ──provider approves──► paid ──callback accepted──► delivered
       │                  └────provider declines───► declined (may be paid again)
       └──wallet payment (one database transaction)──► paid ──retries exhausted──► failed

A repeated purchase message for the same ``cpOrderId`` returns the same order; the same
``cpOrderId`` with any other data (or from another player) is refused. Every query names the
player, so a player can neither see nor pay another player's order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from typing import Any

from qwallet.domain.money import CurrencyRegistry, format_amount
from qwallet.payments.errors import PaymentError, not_found
from qwallet.payments.messages import Purchase, PurchaseMessage, validate_purchase
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

PAYABLE_STATES = ("created", "declined")


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    partner_id: int
    player_id: str
    cp_order_id: str
    server_id: str
    product_id: str
    product_name: str | None
    product_desc: str | None
    product_number: int
    product_price: str
    amount_minor: int
    currency: str
    ext_params: str
    state: str
    method: str | None
    provider_reference: str | None
    qw_transaction_id: str | None
    delivery_attempts: int
    next_delivery_at_ms: int | None
    created_at_ms: int
    paid_at_ms: int | None
    delivered_at_ms: int | None

    @classmethod
    def from_row(cls, row: Row) -> Order:
        return cls(**{field.name: row[field.name] for field in fields(cls)})

    def same_purchase(self, player_id: str, purchase: Purchase) -> bool:
        return (
            self.player_id,
            self.server_id,
            self.product_id,
            self.product_name,
            self.product_desc,
            self.product_number,
            self.product_price,
            self.ext_params,
            self.currency,
        ) == (
            player_id,
            purchase.server_id,
            purchase.product_id,
            purchase.product_name,
            purchase.product_desc,
            purchase.product_number,
            purchase.product_price,
            purchase.ext_params,
            purchase.currency,
        )

    def as_json(self, currencies: CurrencyRegistry, wallet_currency: str) -> dict[str, Any]:
        currency = currencies.get(self.currency)
        amount = format_amount(self.amount_minor, currency) if currency else str(self.amount_minor)
        return {
            "orderId": self.id,
            "cpOrderId": self.cp_order_id,
            "serverId": self.server_id,
            "productId": self.product_id,
            "productName": self.product_name,
            "productDesc": self.product_desc,
            "productNumber": self.product_number,
            "productPrice": self.product_price,
            "amount": amount,
            "currency": self.currency,
            "state": self.state,
            "method": self.method,
            "payable": self.state in PAYABLE_STATES,
            "walletPayable": self.currency == wallet_currency,
        }


_SELECT = "SELECT * FROM payment_orders"


async def _game_session(tx: SqlTransaction, dialect: str, token: str, player_id: str) -> Row:
    # The player row is share-locked on PostgreSQL: a block racing with the order either
    # commits first (and is seen here) or waits until the order is written.
    lock = " FOR SHARE OF pl, p" if dialect == "postgresql" else ""
    row = await tx.fetchrow(
        "SELECT s.partner_id, s.revoked_at_ms, p.name AS partner_name, p.payment_currency,"
        " pl.status AS player_status FROM sessions s JOIN partners p ON p.id = s.partner_id"
        " JOIN players pl ON pl.id = s.player_id"
        f" WHERE s.token = $1 AND s.player_id = $2{lock}",
        token,
        player_id,
    )
    if row is None or row["revoked_at_ms"] is not None:
        raise PaymentError(403, "unknown_session", "This game session is not yours or has ended.")
    return row


async def create_order(
    db: SqlDatabase,
    currencies: CurrencyRegistry,
    *,
    player_id: str,
    token: str,
    message: PurchaseMessage,
    now_ms: int,
) -> tuple[Order, bool]:
    """Create the order for a purchase message, or return the existing identical one.

    Returns ``(order, created)``. The player must be active (checked in the transaction that
    writes the order). The currency is the partner's ``payment_currency``, whatever the player's
    wallet holds: a partner without one takes no orders (409 ``no_payment_currency``) until the
    operator sets it.
    """
    async with db.transaction() as tx:
        session = await _game_session(tx, db.dialect, token, player_id)
        if session["player_status"] != "active":
            raise PaymentError(403, "blocked", "Your account is blocked.")
        code = session["payment_currency"]
        if not code:
            raise PaymentError(
                409,
                "no_payment_currency",
                f"Game {session['partner_name']} has no payment currency configured;"
                " purchases are unavailable until the operator sets one.",
            )
        currency = currencies.get(code)
        if currency is None:
            raise PaymentError(409, "currency", f"Payment currency {code} is not configured.")
        purchase = validate_purchase(message, currency)
        partner_id = int(session["partner_id"])
        inserted = await tx.execute(
            "INSERT INTO payment_orders (id, partner_id, player_id, cp_order_id, server_id,"
            " product_id, product_name, product_desc, product_number, product_price,"
            " amount_minor, currency, ext_params, state, delivery_attempts, created_at_ms,"
            " updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
            " 'created', 0, $14, $14) ON CONFLICT (partner_id, cp_order_id) DO NOTHING",
            str(uuid.uuid4()),
            partner_id,
            player_id,
            purchase.cp_order_id,
            purchase.server_id,
            purchase.product_id,
            purchase.product_name,
            purchase.product_desc,
            purchase.product_number,
            purchase.product_price,
            purchase.amount_minor,
            purchase.currency,
            purchase.ext_params,
            now_ms,
        )
        row = await tx.fetchrow(
            f"{_SELECT} WHERE partner_id = $1 AND cp_order_id = $2",
            partner_id,
            purchase.cp_order_id,
        )
    assert row is not None
    order = Order.from_row(row)
    if not inserted and not order.same_purchase(player_id, purchase):
        raise PaymentError(409, "conflict", "cpOrderId was already used for a different purchase.")
    return order, bool(inserted)


async def get_order(db: SqlDatabase, order_id: str, player_id: str) -> Order:
    async with db.transaction() as tx:
        row = await tx.fetchrow(f"{_SELECT} WHERE id = $1 AND player_id = $2", order_id, player_id)
    if row is None:
        raise not_found()
    return Order.from_row(row)


async def find_order(db: SqlDatabase, order_id: str) -> Order | None:
    """Any player's order (operator side, worker)."""
    async with db.transaction() as tx:
        row = await tx.fetchrow(f"{_SELECT} WHERE id = $1", order_id)
    return None if row is None else Order.from_row(row)
