"""The transaction id of a wallet payment (``payments/wallet.py``), on both databases: a
version-7 UUID of the payment's clock. A module of its own: the paid orders it leaves would be
picked up by the delivery worker of test_delivery's tests."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Platform

from .test_delivery import paid_order


def test_a_wallet_payment_has_a_time_ordered_id(platform: Platform) -> None:
    """The payment's transaction id is a version-7 UUID of the payment's clock, and payments a
    few milliseconds apart have ids in that order."""
    ids: list[str] = []
    for _ in range(3):
        platform.clock.advance(3)
        paid_at = platform.clock.now_ms()
        order_id, _ = paid_order(platform)

        async def stored(order_id: str = order_id) -> tuple[Any, Any]:
            async with platform.store.transaction() as tx:
                order = await tx.fetchrow(
                    "SELECT qw_transaction_id FROM payment_orders WHERE id = $1", order_id
                )
                assert order is not None
                row = await tx.fetchrow(
                    "SELECT qw_transaction_id, created_at_ms FROM transactions"
                    " WHERE qw_transaction_id = $1",
                    order["qw_transaction_id"],
                )
            return order["qw_transaction_id"], row

        qw_id, row = platform.run(stored())
        assert row == {"qw_transaction_id": qw_id, "created_at_ms": paid_at}
        value = uuid.UUID(qw_id)
        assert (value.version, value.variant, value.int >> 80) == (7, uuid.RFC_4122, paid_at)
        ids.append(qw_id)
    assert sorted(ids) == ids
