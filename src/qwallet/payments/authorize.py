"""The checks every payment makes inside its own database transaction, before its first write.

What the client sends (the method, the option) only picks among what the database allows: the
order's partner must list the method (and, for a sandbox method, be a sandbox partner) and the
player must be active, as read from the rows in the transaction that then writes. On PostgreSQL
the player row is locked (``FOR UPDATE``: the payment is serialized with a block of the player,
which either commits first and is seen, or waits for the payment to finish) and the partner row
is shared-locked (a settings change waits likewise). SQLite transactions are ``BEGIN IMMEDIATE``,
so nothing else writes meanwhile.
"""

from __future__ import annotations

from qwallet.domain.payment_methods import SANDBOX_METHODS, PartnerMethods
from qwallet.payments.errors import PaymentError, not_found
from qwallet.payments.orders import Order
from qwallet.store.sql import SqlTransaction


def blocked() -> PaymentError:
    return PaymentError(403, "blocked", "Your account is blocked.")


def check_method(partner: PartnerMethods, method: str) -> None:
    if method in SANDBOX_METHODS and method in partner.methods and not partner.sandbox:
        raise PaymentError(403, "sandbox_refused", "Sandbox payments are not accepted here.")
    if not partner.allows(method):
        raise PaymentError(400, "invalid_method", "This payment method is not offered.")


async def payable_order(
    tx: SqlTransaction, dialect: str, order_id: str, player_id: str, method: str
) -> Order:
    """The player's order, once the player may pay it with ``method`` (else ``PaymentError``)."""
    lock = " FOR UPDATE OF pl FOR SHARE OF p" if dialect == "postgresql" else ""
    row = await tx.fetchrow(
        "SELECT o.*, p.sandbox AS partner_sandbox, p.payment_methods AS partner_methods,"
        " pl.status AS player_status FROM payment_orders o"
        " JOIN partners p ON p.id = o.partner_id JOIN players pl ON pl.id = o.player_id"
        f" WHERE o.id = $1 AND o.player_id = $2{lock}",
        order_id,
        player_id,
    )
    if row is None:
        raise not_found()
    if row["player_status"] != "active":
        raise blocked()
    check_method(PartnerMethods.from_row(row["partner_methods"], row["partner_sandbox"]), method)
    return Order.from_row(row)


__all__ = ["blocked", "check_method", "payable_order"]
