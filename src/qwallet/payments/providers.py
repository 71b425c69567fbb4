"""Payment providers: how a player pays an order.

A provider ``start``s a payment for an order the player chose it for. Some settle at once (the
wallet); others confirm later, asynchronously, the way card providers call a webhook minutes
after the player clicked: the payment worker asks every provider for its ``due_events`` on each
tick and applies them with ``settle``. Because pending payments live in the database
(``state = 'paying'``, ``method``, ``provider_reference``), a restart loses nothing.

Which providers a player is offered is the partner's configuration, never the client's choice:
a provider is offered (``offered``) and may ``start`` only when the order's partner lists its
method in ``partners.payment_methods`` and, for a sandbox provider, the partner is a sandbox
partner (``qwallet.domain.payment_methods``); ``start`` checks this again inside its own transaction
(``qwallet.payments.authorize``), and ``settle`` never pays a sandbox event for an order of a
partner that is not (or no longer) a sandbox partner: such an event declines the payment.

Shipped providers (``provider_registry``; the registry only says what this process can run):

- ``WalletProvider`` (``wallet``): one database transaction, see ``qwallet.payments.wallet``;
  offered when the order's currency is the player's wallet currency.
- ``SandboxCardProvider`` (``sandbox_card``, sandbox partners only): the player picks the
  outcome (``approve`` or ``decline``); the "provider" confirms it ``delay_s`` later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from qwallet.domain.payment_methods import SANDBOX_CARD, SANDBOX_METHODS, PartnerMethods
from qwallet.payments import wallet
from qwallet.payments.authorize import payable_order
from qwallet.payments.errors import PaymentError
from qwallet.payments.orders import Order
from qwallet.store.sql import SqlDatabase

logger = logging.getLogger("qwallet.payments.providers")


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """What a provider reports about a payment: approved (paid) or declined."""

    order_id: str
    reference: str
    approved: bool


class PaymentProvider(Protocol):
    method: str
    label: str

    def offered_for(self, order: Order, wallet_currency: str) -> bool: ...

    async def start(
        self, db: SqlDatabase, order_id: str, player_id: str, option: str | None, now_ms: int
    ) -> Order: ...

    async def due_events(self, db: SqlDatabase, now_ms: int) -> list[ProviderEvent]: ...


class WalletProvider:
    method = wallet.METHOD
    label = "Pay from wallet balance"

    def offered_for(self, order: Order, wallet_currency: str) -> bool:
        return order.currency == wallet_currency

    async def start(
        self, db: SqlDatabase, order_id: str, player_id: str, option: str | None, now_ms: int
    ) -> Order:
        return await wallet.pay_with_wallet(db, order_id, player_id, now_ms)

    async def due_events(self, db: SqlDatabase, now_ms: int) -> list[ProviderEvent]:
        return []


class SandboxCardProvider:
    """A test card: ``approve`` or ``decline``, confirmed ``delay_s`` after the click."""

    method = SANDBOX_CARD
    label = "Sandbox card"
    OPTIONS = ("approve", "decline")

    def __init__(self, delay_s: float = 2.0) -> None:
        self.delay_ms = int(delay_s * 1000)

    def offered_for(self, order: Order, wallet_currency: str) -> bool:
        return True

    async def start(
        self, db: SqlDatabase, order_id: str, player_id: str, option: str | None, now_ms: int
    ) -> Order:
        if option not in self.OPTIONS:
            raise PaymentError(400, "invalid_option", "Choose approve or decline.")
        # The outcome the sandbox will report travels in the reference, like a test card number.
        reference = f"sandbox:{uuid.uuid4().hex}:{option}"
        async with db.transaction() as tx:
            order = await payable_order(tx, db.dialect, order_id, player_id, self.method)
            changed = await tx.execute(
                "UPDATE payment_orders SET state = 'paying', method = $1,"
                " provider_reference = $2, updated_at_ms = $3"
                " WHERE id = $4 AND player_id = $5 AND state IN ('created', 'declined')",
                self.method,
                reference,
                now_ms,
                order_id,
                player_id,
            )
            if changed != 1:
                raise PaymentError(409, "state", f"This order is {order.state}; it cannot be paid.")
            row = await tx.fetchrow("SELECT * FROM payment_orders WHERE id = $1", order_id)
        assert row is not None
        return Order.from_row(row)

    async def due_events(self, db: SqlDatabase, now_ms: int) -> list[ProviderEvent]:
        async with db.transaction() as tx:
            rows = await tx.fetch(
                "SELECT id, provider_reference FROM payment_orders"
                " WHERE state = 'paying' AND method = $1 AND updated_at_ms <= $2"
                " ORDER BY updated_at_ms LIMIT 100",
                self.method,
                now_ms - self.delay_ms,
            )
        return [
            ProviderEvent(
                str(row["id"]),
                str(row["provider_reference"]),
                str(row["provider_reference"]).endswith(":approve"),
            )
            for row in rows
        ]


async def settle(db: SqlDatabase, event: ProviderEvent, now_ms: int, *, method: str) -> str | None:
    """Apply a provider's verdict once: ``paying`` → ``paid`` (due for delivery) or ``declined``.

    Returns ``"paid"``, ``"declined"``, ``"refused"`` (an approval that was not applied, the
    payment declined instead) or None when nothing changed. Only the payment the provider knows
    (same method and reference) is settled, and only once: a repeated or stale event changes
    nothing. An approval from a sandbox provider pays only an order of a sandbox partner; for any
    other order the payment is declined: the sandbox never pays a production partner.
    """
    sandbox = method in SANDBOX_METHODS
    paying = "id = $2 AND state = 'paying' AND method = $3 AND provider_reference = $4"
    async with db.transaction() as tx:
        changed = 0
        if event.approved:
            changed = await tx.execute(
                "UPDATE payment_orders SET state = 'paid', paid_at_ms = $1, updated_at_ms = $1,"
                " next_delivery_at_ms = $1, delivery_attempts = 0"
                f" WHERE {paying} AND ($5 = 0 OR EXISTS (SELECT 1 FROM partners p"
                "  WHERE p.id = payment_orders.partner_id AND p.sandbox = 1))",
                now_ms,
                event.order_id,
                method,
                event.reference,
                int(sandbox),
            )
        if changed == 1:
            return "paid"
        declined = await tx.execute(
            f"UPDATE payment_orders SET state = 'declined', updated_at_ms = $1 WHERE {paying}",
            now_ms,
            event.order_id,
            method,
            event.reference,
        )
    if declined != 1:
        return None
    if event.approved:
        logger.error(
            "refused a %s approval for order %s: its partner is not a sandbox partner",
            method,
            event.order_id,
        )
        return "refused"
    return "declined"


def provider_registry(sandbox_delay_s: float) -> dict[str, PaymentProvider]:
    """Every provider this process can run, by method. Offering one is per partner (``offered``)."""
    providers: list[PaymentProvider] = [WalletProvider(), SandboxCardProvider(sandbox_delay_s)]
    return {provider.method: provider for provider in providers}


def offered(
    providers: Mapping[str, PaymentProvider],
    order: Order,
    partner: PartnerMethods,
    wallet_currency: str,
) -> list[PaymentProvider]:
    """The providers the player may choose for ``order``, in the partner's order of methods."""
    return [
        providers[method]
        for method in partner.methods
        if method in providers
        and partner.allows(method)
        and providers[method].offered_for(order, wallet_currency)
    ]


__all__ = [
    "PaymentProvider",
    "ProviderEvent",
    "SandboxCardProvider",
    "WalletProvider",
    "offered",
    "provider_registry",
    "settle",
]
