"""Payment providers: how a player pays an order.

A provider ``start``s a payment for an order the player chose it for. Some settle at once (the
wallet); others confirm later, asynchronously, the way card providers call a webhook minutes
after the player clicked: the payment worker asks every provider for its ``due_events`` on each
tick and applies them with ``settle``. Because pending payments live in the database
(``state = 'paying'``, ``method``, ``provider_reference``), a restart loses nothing.

Shipped providers:

- ``WalletProvider`` (``wallet``): one database transaction, see ``qwallet.payments.wallet``;
  offered when the order's currency is the player's wallet currency.
- ``SandboxCardProvider`` (``sandbox_card``): the player picks the outcome (``approve`` or
  ``decline``); the "provider" confirms it ``delay_s`` later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from qwallet.payments import wallet
from qwallet.payments.errors import PaymentError
from qwallet.payments.orders import Order, get_order
from qwallet.store.sql import SqlDatabase


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

    method = "sandbox_card"
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
        order = await get_order(db, order_id, player_id)
        if changed != 1:
            raise PaymentError(409, "state", f"This order is {order.state}; it cannot be paid.")
        return order

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


async def settle(db: SqlDatabase, event: ProviderEvent, now_ms: int) -> bool:
    """Apply a provider's verdict once: ``paying`` → ``paid`` (due for delivery) or ``declined``.

    Only the payment the provider knows (same reference) is settled, and only once: a repeated
    or stale event changes nothing and returns False.
    """
    async with db.transaction() as tx:
        if event.approved:
            changed = await tx.execute(
                "UPDATE payment_orders SET state = 'paid', paid_at_ms = $1, updated_at_ms = $1,"
                " next_delivery_at_ms = $1, delivery_attempts = 0"
                " WHERE id = $2 AND state = 'paying' AND provider_reference = $3",
                now_ms,
                event.order_id,
                event.reference,
            )
        else:
            changed = await tx.execute(
                "UPDATE payment_orders SET state = 'declined', updated_at_ms = $1"
                " WHERE id = $2 AND state = 'paying' AND provider_reference = $3",
                now_ms,
                event.order_id,
                event.reference,
            )
    return changed == 1


def default_providers(sandbox_delay_s: float) -> dict[str, PaymentProvider]:
    providers: list[PaymentProvider] = [WalletProvider(), SandboxCardProvider(sandbox_delay_s)]
    return {provider.method: provider for provider in providers}


__all__ = [
    "PaymentProvider",
    "ProviderEvent",
    "SandboxCardProvider",
    "WalletProvider",
    "default_providers",
    "settle",
]
