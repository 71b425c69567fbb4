"""``qwallet orders``: payment orders (audited as ``order.redeliver``)."""

from __future__ import annotations

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.service import orders_admin
from qwallet.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Payment orders.")


@app.command("redeliver")
def orders_redeliver(order_id: str, as_json: JsonOption = False) -> None:
    """Queue a delivered or failed order's payment callback again (the partner de-duplicates
    by cpOrderId)."""
    with_store(
        Settings.from_env(),
        lambda store: orders_admin.redeliver(store, order_id, actor(), now_ms()),
    )
    emit(as_json, {"orderId": order_id, "state": "paid"}, f"order {order_id} queued for redelivery")
