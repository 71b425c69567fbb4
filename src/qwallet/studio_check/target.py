"""What the check needs from the platform's records: the studio's endpoints and its test data.

The tester creates no money movement. Every vector is built from what the studio itself did in
the platform's records, because a studio answers from **its own** records:

- the callback vectors re-send a payment order the studio issued (its game client posted the
  purchase message) and the platform already delivered — the latest such order of the partner,
  or the one the operator names (``--order``). A re-sent callback is what the platform's
  at-least-once delivery does anyway, so a correct studio acknowledges it and delivers nothing
  again;
- the Query Withdrawal vectors ask about withdrawals the studio made: the latest one it
  confirmed itself, the latest it rolled back itself (not settled by the hold resolver, whose
  decision came from the platform's side), and the latest still pending — or the ones the
  operator names. A transaction the platform made up would be unknown to the studio, whose only
  correct answer would then be ``UNKNOWN``.

A row whose data does not exist (a fresh sandbox partner that never sold anything) is skipped
with the reason, not failed; ``--strict`` makes a skip fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwallet.domain.money import CurrencyRegistry, format_amount
from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row, SqlDatabase, fetch_one

__all__ = [
    "DataChoice",
    "DeliveredOrder",
    "Endpoints",
    "Target",
    "Withdrawal",
    "load_target",
]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The studio's two endpoints and the secrets the platform uses with them."""

    callback_url: str | None
    callback_secret: str | None
    callback_format: str
    allow_http_callback: bool
    query_url: str | None
    query_username: str | None
    query_password: str | None


@dataclass(frozen=True, slots=True)
class DeliveredOrder:
    """A payment order the studio issued and the platform delivered: the callback's fields."""

    cp_order_id: str
    uid: str
    server_id: str
    product_id: str
    product_price: str
    ext_params: str
    amount: str
    currency_code: str
    provider: str


@dataclass(frozen=True, slots=True)
class Withdrawal:
    mm_transaction_id: str
    qw_transaction_id: str


@dataclass(frozen=True, slots=True)
class DataChoice:
    """What the operator chose on the command line or in the console (None: pick the latest)."""

    order: str | None = None
    confirmed: str | None = None
    rolled_back: str | None = None
    pending: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    partner: str
    sandbox: bool
    endpoints: Endpoints
    order: DeliveredOrder | None
    confirmed: Withdrawal | None
    rolled_back: Withdrawal | None
    pending: Withdrawal | None


async def load_target(
    db: SqlDatabase, currencies: CurrencyRegistry, partner: str, choice: DataChoice
) -> Target:
    """Read the partner's endpoints and the test data; ``OperatorError`` if a named item is
    missing (the operator asked for it, so silently picking another would mislead)."""
    row = await fetch_one(db, "SELECT * FROM partners WHERE name = $1", partner)
    if row is None:
        raise OperatorError(f"no partner named {partner!r}")
    partner_id = int(row["id"])
    endpoints = Endpoints(
        callback_url=row["callback_url"],
        callback_secret=row["callback_secret"],
        callback_format=str(row["callback_format"] or "form"),
        allow_http_callback=bool(row["allow_http_callback"]),
        query_url=row["query_url"],
        query_username=row["query_username"],
        query_password=row["query_password"],
    )
    return Target(
        partner=partner,
        sandbox=bool(row["sandbox"]),
        endpoints=endpoints,
        order=await _order(db, currencies, partner_id, choice.order),
        confirmed=await _withdrawal(db, partner_id, "confirmed", choice.confirmed),
        rolled_back=await _withdrawal(db, partner_id, "rolled_back", choice.rolled_back),
        pending=await _withdrawal(db, partner_id, "pending", choice.pending),
    )


async def _order(
    db: SqlDatabase, currencies: CurrencyRegistry, partner_id: int, cp_order_id: str | None
) -> DeliveredOrder | None:
    if cp_order_id is None:
        row = await fetch_one(
            db,
            "SELECT * FROM payment_orders WHERE partner_id = $1 AND state = 'delivered'"
            " ORDER BY delivered_at_ms DESC, id DESC LIMIT 1",
            partner_id,
        )
        return None if row is None else _delivered(row, currencies)
    row = await fetch_one(
        db,
        "SELECT * FROM payment_orders WHERE partner_id = $1 AND cp_order_id = $2",
        partner_id,
        cp_order_id,
    )
    if row is None:
        raise OperatorError(f"no payment order with cpOrderId {cp_order_id!r} for this partner")
    if row["state"] != "delivered":
        # Only a delivered order may be re-sent: the studio has granted it already, so a correct
        # studio grants nothing again. Sending a paid-but-undelivered one would deliver it.
        raise OperatorError(
            f"payment order {cp_order_id!r} is {row['state']}, not delivered:"
            " the check re-sends only orders the studio has already received"
        )
    return _delivered(row, currencies)


def _delivered(row: Row, currencies: CurrencyRegistry) -> DeliveredOrder:
    currency = currencies[str(row["currency"])]
    return DeliveredOrder(
        cp_order_id=str(row["cp_order_id"]),
        uid=str(row["player_id"]),
        server_id=str(row["server_id"]),
        product_id=str(row["product_id"]),
        product_price=str(row["product_price"]),
        ext_params=str(row["ext_params"]),
        amount=format_amount(int(row["amount_minor"]), currency),
        currency_code=currency.code,
        provider=str(row["method"]),
    )


# The platform's own wallet payments are withdrawals too (``payment:<order id>``), which the
# studio never made: leave them out.
_STUDIO_MADE = (
    " AND NOT EXISTS (SELECT 1 FROM payment_orders p"
    " WHERE p.qw_transaction_id = t.qw_transaction_id)"
)
# Settled by the studio itself: no hold resolution applied the final state.
_BY_STUDIO = (
    " AND NOT EXISTS (SELECT 1 FROM hold_resolutions h"
    " WHERE h.qw_transaction_id = t.qw_transaction_id AND h.action IN ('confirmed', 'rolled_back'))"
)


async def _withdrawal(
    db: SqlDatabase, partner_id: int, state: str, mm_transaction_id: str | None
) -> Withdrawal | None:
    by_studio = _STUDIO_MADE + (_BY_STUDIO if state != "pending" else "")
    if mm_transaction_id is None:
        row = await fetch_one(
            db,
            "SELECT t.mm_transaction_id, t.qw_transaction_id FROM transactions t"
            " WHERE t.partner_id = $1 AND t.kind = 'withdrawal' AND t.state = $2"
            + by_studio
            + " ORDER BY t.updated_at_ms DESC, t.qw_transaction_id DESC LIMIT 1",
            partner_id,
            state,
        )
        return None if row is None else _withdrawal_of(row)
    row = await fetch_one(
        db,
        # The key's primary key finds it; the row by its partition key (one partition).
        "SELECT t.mm_transaction_id, t.qw_transaction_id, t.state FROM transaction_keys k"
        " JOIN transactions t ON t.qw_transaction_id = k.qw_transaction_id"
        " AND t.created_at_ms = k.created_at_ms"
        " WHERE k.partner_id = $1 AND k.kind = 'withdrawal' AND k.mm_transaction_id = $2",
        partner_id,
        mm_transaction_id,
    )
    if row is None:
        raise OperatorError(f"no withdrawal {mm_transaction_id!r} of this partner")
    if row["state"] != state:
        raise OperatorError(
            f"withdrawal {mm_transaction_id!r} is {row['state']} at the platform, not {state}"
        )
    return _withdrawal_of(row)


def _withdrawal_of(row: Row) -> Withdrawal:
    return Withdrawal(str(row["mm_transaction_id"]), str(row["qw_transaction_id"]))
