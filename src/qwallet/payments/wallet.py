"""Pay an order from the player's wallet balance: one database transaction, four ledger entries.

The payment is an ordinary wallet withdrawal that is born confirmed: a ``transactions`` row of
kind ``withdrawal`` for the order's partner, ``mm_transaction_id`` ``payment:<order id>``, state
``confirmed``, with the two steps a withdrawal always has — available → held, held → partner —
so the ledger sums to zero per step and ``qwallet reconcile`` sees exactly the four entries a
final transaction implies.

Before any write, ``authorize.payable_order`` checks in the same transaction that the order's
partner offers the wallet and that the player is active (the player row stays locked on
PostgreSQL until commit).

Concurrency is the database's: the order moves to ``paid`` with a conditional UPDATE
(``state IN ('created', 'declined')``), so two clicks cannot both pay; the wallet is debited with
a conditional UPDATE (``available_minor >= amount``, player active, same currency, daily limit),
so two payments cannot overdraw it. Either refusal rolls the whole transaction back.
"""

from __future__ import annotations

from qwallet.domain import ledger
from qwallet.domain.ids import new_transaction_id
from qwallet.domain.payment_methods import WALLET
from qwallet.domain.sessions import utc_day
from qwallet.domain.transactions import Kind, Phase
from qwallet.payments.authorize import payable_order
from qwallet.payments.errors import PaymentError
from qwallet.payments.orders import Order
from qwallet.store import ledger as money
from qwallet.store.sql import SqlDatabase, SqlTransaction

METHOD = WALLET


def mm_transaction_id(order_id: str) -> str:
    return f"payment:{order_id}"


async def pay_with_wallet(db: SqlDatabase, order_id: str, player_id: str, now_ms: int) -> Order:
    """Pay the order from the wallet; paying an order already paid this way is a no-op."""
    qw_transaction_id = new_transaction_id(now_ms)
    async with db.transaction() as tx:
        order = await payable_order(tx, db.dialect, order_id, player_id, METHOD)
        if order.method == METHOD and order.state in ("paid", "delivered", "failed"):
            return order
        claimed = await tx.execute(
            "UPDATE payment_orders SET state = 'paid', method = $1, qw_transaction_id = $2,"
            " provider_reference = NULL, paid_at_ms = $3, updated_at_ms = $3,"
            " next_delivery_at_ms = $3, delivery_attempts = 0"
            " WHERE id = $4 AND player_id = $5 AND state IN ('created', 'declined')",
            METHOD,
            qw_transaction_id,
            now_ms,
            order_id,
            player_id,
        )
        if claimed != 1:
            raise PaymentError(409, "state", f"This order is {order.state}; it cannot be paid.")
        balance_minor = await _debit(tx, order, now_ms)
        await _record_transaction(tx, order, qw_transaction_id, balance_minor, now_ms)
        paid = await tx.fetchrow("SELECT * FROM payment_orders WHERE id = $1", order_id)
    assert paid is not None
    return Order.from_row(paid)


async def _debit(tx: SqlTransaction, order: Order, now_ms: int) -> int:
    today = utc_day(now_ms)
    changed = await money.debit_for_payment(
        tx, order.player_id, order.currency, order.amount_minor, today
    )
    player = await tx.fetchrow(
        "SELECT status, currency, available_minor FROM players WHERE id = $1", order.player_id
    )
    assert player is not None
    if changed:
        return int(player["available_minor"])
    if player["status"] != "active":
        raise PaymentError(403, "blocked", "Your account is blocked.")
    if player["currency"] != order.currency:
        raise PaymentError(409, "currency", "Your wallet is in another currency.")
    if int(player["available_minor"]) < order.amount_minor:
        raise PaymentError(409, "insufficient_funds", "Insufficient funds in your wallet.")
    raise PaymentError(409, "limit", "This payment would exceed your daily limit.")


async def _record_transaction(
    tx: SqlTransaction, order: Order, qw_transaction_id: str, balance_minor: int, now_ms: int
) -> None:
    description = f"Payment order {order.cp_order_id}: {order.product_name or order.product_id}"
    await money.claim_transaction_key(
        tx,
        partner_id=order.partner_id,
        kind=Kind.WITHDRAWAL.value,
        mm_transaction_id=mm_transaction_id(order.id),
        qw_transaction_id=qw_transaction_id,
        now_ms=now_ms,
    )
    await tx.execute(
        "INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id,"
        " player_id, amount_minor, currency, state, description, begin_balance_minor,"
        " final_balance_minor, created_at_ms, updated_at_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, 'confirmed', $8, $9, $9, $10, $10)",
        qw_transaction_id,
        order.partner_id,
        Kind.WITHDRAWAL.value,
        mm_transaction_id(order.id),
        order.player_id,
        order.amount_minor,
        order.currency,
        description[:255],
        balance_minor,
        now_ms,
    )
    for phase in (Phase.BEGIN, Phase.CONFIRM):
        await money.append_transaction_entries(
            tx,
            qw_transaction_id,
            phase,
            ledger.movement(Kind.WITHDRAWAL, phase, order.amount_minor),
            player_id=order.player_id,
            partner_id=order.partner_id,
            currency=order.currency,
            now_ms=now_ms,
        )
