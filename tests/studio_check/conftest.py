"""Helpers for the integration-check tests: a sandbox partner whose studio runs on loopback, and
its test data made the way a studio makes it (Wallet API calls, a paid and delivered order)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from qwallet.clock import SystemClock
from qwallet.payments import (
    PaymentWorker,
    PurchaseMessage,
    WalletProvider,
    create_order,
    pay_with_wallet,
)
from qwallet.service import partners
from qwallet.studio_check import CheckResult, DataChoice, check_partner
from tests.conftest import LiveServer, Platform

from .broken_studio import Studio

CALLBACK_SECRET = "MKiLHWZvGPTq2258aZ"
QUERY_AUTH = ("qw-platform", "pl4tform-pass-0123")


@dataclass
class SandboxPartner:
    name: str
    username: str
    password: str


def create_sandbox_partner(platform: Platform, *, sandbox: bool = True) -> SandboxPartner:
    """A partner with known secrets (the studio is configured with them before it starts)."""
    name = f"check-{secrets.token_hex(4)}"
    created = platform.run(
        partners.create_partner(
            platform.store,
            name,
            platform.clock.now_ms(),
            payment_currency=platform.settings.currency_registry["XAG"],
            sandbox=sandbox,
            allow_http_callback=True,
            query_username=QUERY_AUTH[0],
            query_password=QUERY_AUTH[1],
        )
    )

    async def set_secret() -> None:
        async with platform.store.transaction() as tx:
            await tx.execute(
                "UPDATE partners SET callback_secret = $1 WHERE name = $2", CALLBACK_SECRET, name
            )

    platform.run(set_secret())
    return SandboxPartner(name, created.username, created.password)


def point_partner_at(platform: Platform, name: str, studio_url: str, query_path: str) -> None:
    platform.run(
        partners.update_partner(
            platform.store,
            name,
            partners.PartnerUpdate(
                callback_url=f"{studio_url}/pay/quantum", query_url=f"{studio_url}{query_path}"
            ),
            now_ms=platform.clock.now_ms(),
        )
    )


def pay_and_deliver(platform: Platform, player_id: str, token: str, message: dict[str, Any]) -> str:
    """What the platform does with a purchase message: the order, paid from the wallet, then
    one tick of the payment worker, which delivers it to the studio over HTTP. Returns the
    order's state after the tick."""
    # bytes: the message's exact JSON text (its numbers as the game wrote them).
    text = message if isinstance(message, bytes) else json.dumps(message).encode()
    purchase = msgspec.json.decode(text, type=PurchaseMessage)

    async def run() -> str:
        order, _ = await create_order(
            platform.store,
            platform.settings.currency_registry,
            player_id=player_id,
            token=token,
            message=purchase,
            now_ms=platform.clock.now_ms(),
        )
        await pay_with_wallet(platform.store, order.id, player_id, platform.clock.now_ms())
        worker = PaymentWorker(
            platform.store,
            platform.clock,
            {"wallet": WalletProvider()},
            currencies=platform.settings.currency_registry,
        )
        try:
            await worker.run_once()
        finally:
            await worker.stop()  # closes its HTTP client
        async with platform.store.transaction() as tx:
            row = await tx.fetchrow("SELECT state FROM payment_orders WHERE id = $1", order.id)
        assert row is not None
        return str(row["state"])

    return platform.run(run())


def wallet_call(
    server: LiveServer, partner: SandboxPartner, endpoint: str, body: dict[str, Any]
) -> dict[str, Any]:
    """One Wallet API call as the studio makes it; amounts are sent as exact JSON numbers."""
    text = json.dumps({k: v for k, v in body.items() if k != "amount"})
    if "amount" in body:
        text = text[:-1] + f', "amount": {{"amount": {body["amount"]}, "currencyCode": "XAG"}}}}'
    response = httpx.post(
        f"{server.url}/wallet/{endpoint}",
        content=text,
        headers={"Content-Type": "application/json"},
        auth=(partner.username, partner.password),
        timeout=10,
    )
    answer: dict[str, Any] = response.json()
    assert response.status_code == 200 and "errorCode" not in answer, answer
    return answer


def run_check(platform: Platform, name: str, **options: Any) -> CheckResult:
    choice = options.pop("choice", DataChoice())
    return platform.run(
        check_partner(
            platform.store,
            platform.settings.currency_registry,
            SystemClock(),
            name,
            choice,
            **options,
        )
    )


def outcomes(result: CheckResult) -> dict[str, str]:
    return {row.key: row.outcome for row in result.rows}


def misses(result: CheckResult) -> set[str]:
    return {row.key for row in result.misses}


def stage(
    server: LiveServer, platform: Platform, partner: SandboxPartner, studio: Studio, url: str
) -> str:
    """Point the partner at the studio and give it data, the way a studio makes it: an order it
    issued, paid and delivered; one withdrawal confirmed, one rolled back, one still pending.
    Returns the order's cpOrderId."""
    point_partner_at(platform, partner.name, url, "/query")
    player_id = platform.create_player("100.00")
    token = platform.create_session(player_id, partner.name)
    # The studio's side of a sale: it issues the order, the platform charges and delivers.
    cp_order_id = secrets.token_hex(16)
    studio.issued[cp_order_id] = player_id
    message = {
        "serverId": 7, "cpOrderId": cp_order_id, "productId": "gems.small",
        "productPrice": 0.99, "extParams": "", "productNumber": 1,
    }  # fmt: skip
    assert pay_and_deliver(platform, player_id, token, message) == "delivered"
    assert studio.delivered == {cp_order_id}
    # Its withdrawals: one confirmed, one rolled back, one still pending.
    for mm_id, follow_up, status in (
        ("bs-confirmed", "confirmWithdrawal", "CONFIRMED"),
        ("bs-rolled-back", "rollbackWithdrawal", "ROLLED_BACK"),
        ("bs-pending", None, "PENDING"),
    ):
        wallet_call(server, partner, "withdraw",
                    {"token": token, "mmTransactionId": mm_id, "amount": "1.00"})  # fmt: skip
        if follow_up == "confirmWithdrawal":
            wallet_call(server, partner, follow_up,
                        {"token": token, "mmTransactionId": mm_id, "amount": "1.00"})  # fmt: skip
        elif follow_up:
            wallet_call(server, partner, follow_up, {"token": token, "mmTransactionId": mm_id})
        studio.withdrawals[mm_id] = status
    return cp_order_id


__all__ = [
    "CALLBACK_SECRET",
    "QUERY_AUTH",
    "SandboxPartner",
    "create_sandbox_partner",
    "misses",
    "outcomes",
    "pay_and_deliver",
    "point_partner_at",
    "run_check",
    "stage",
    "wallet_call",
]
