"""Payment orders over HTTP on both databases: idempotency, ownership, the wallet payment and its
ledger, the sandbox card, and delivery to the partner kit's real callback receiver."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .conftest import Browser, World, advance, kit_receiver, purchase, wait_for


def open_game(world: World, balance: str = "100.00", **game: Any) -> tuple[Browser, str, Any]:
    played = world.game(**game)
    player = world.player(balance)
    browser = world.browser(player)
    token = browser.play(played.name)["token"]
    return browser, token, player


def ledger_of(world: World, qw_transaction_id: str) -> list[tuple[str, str, int]]:
    async def fetch() -> list[tuple[str, str, int]]:
        async with world.platform.store.transaction() as tx:
            rows = await tx.fetch(
                "SELECT phase, account, amount_minor FROM ledger_entries"
                " WHERE transaction_id = $1 ORDER BY id",
                qw_transaction_id,
            )
        return [(r["phase"], r["account"], int(r["amount_minor"])) for r in rows]

    return world.platform.run(fetch())


def transaction_of(world: World, qw_transaction_id: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        async with world.platform.store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT * FROM transactions WHERE qw_transaction_id = $1", qw_transaction_id
            )
        assert row is not None
        return dict(row)

    return world.platform.run(fetch())


def test_same_message_twice_is_the_same_order(world: World) -> None:
    browser, token, _ = open_game(world, sandbox=True)
    message = purchase(productNumber=3)
    first = browser.post_json("/payments/orders", {"token": token, "message": message})
    again = browser.post_json("/payments/orders", {"token": token, "message": message})
    assert first.status_code == 201 and again.status_code == 200
    order = first.json()["order"]
    assert again.json()["order"]["orderId"] == order["orderId"]
    assert order["amount"] == "14.97" and order["productPrice"] == "4.99"
    assert order["currency"] == "XAG" and order["state"] == "created"
    methods = {m["method"]: m["options"] for m in first.json()["methods"]}
    assert methods == {"wallet": [], "sandbox_card": ["approve", "decline"]}

    changed = browser.post_json(
        "/payments/orders", {"token": token, "message": {**message, "productPrice": 5.99}}
    )
    assert changed.status_code == 409 and changed.json()["error"] == "conflict"
    changed = browser.post_json(
        "/payments/orders", {"token": token, "message": {**message, "extParams": "other"}}
    )
    assert changed.status_code == 409


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"productPrice": 4.999}, "decimals"),
        ({"productPrice": 0}, "greater than zero"),
        ({"productPrice": "4.99"}, "number"),
        ({"productNumber": 0}, "productNumber"),
        ({"productNumber": 1.5}, "productNumber"),
        ({"serverId": "10001"}, "serverId"),
        ({"serverId": -1}, "serverId"),
        # A fraction could shift characters between signed fields; the kit refuses it too.
        ({"serverId": 10001.5}, "serverId must be a non-negative integer"),
        ({"cpOrderId": "x" * 65}, "cpOrderId"),
        ({"cpOrderId": ""}, "cpOrderId"),
        ({"productId": "a\nb"}, "productId"),
        ({"productName": "n" * 129}, "productName"),
        ({"productDesc": "d" * 256}, "productDesc"),
        ({"extParams": "e" * 1025}, "extParams"),
        ({"extParams": None}, "extParams"),
        # U+0000 in any text (PostgreSQL cannot store it), free texts included
        ({"productName": "a\u0000"}, "productName must not contain U+0000"),
        ({"extParams": "\u0000"}, "extParams must not contain U+0000"),
        ({"color": "red"}, "color"),
    ],
)
def test_invalid_messages_are_refused(world: World, change: dict[str, Any], why: str) -> None:
    browser, token, _ = open_game(world)
    message = {k: v for k, v in {**purchase(), **change}.items() if v is not None}
    response = browser.post_json("/payments/orders", {"token": token, "message": message})
    assert response.status_code == 400, response.text
    assert why in response.text


def test_a_player_cannot_see_or_pay_another_players_order(world: World) -> None:
    owner, token, _ = open_game(world)
    order_id = owner.order(token).json()["order"]["orderId"]
    other = world.browser(world.player())
    assert other.get(f"/payments/orders/{order_id}").status_code == 404
    assert other.pay(order_id, "wallet").status_code == 404
    assert other.pay(order_id, "sandbox_card", "approve").status_code == 404
    # Nor use the owner's game session to create orders.
    assert other.order(token).status_code == 403
    assert world.order_row(order_id)["state"] == "created"
    assert owner.get(f"/payments/orders/{order_id}").status_code == 200


def test_wallet_payment_is_one_ledger_transaction(world: World, tmp_path: Path) -> None:
    with kit_receiver(tmp_path) as receiver:
        browser, token, player = open_game(world, callback_url=receiver.url, secret=receiver.secret)
        order = browser.order(token, productNumber=2).json()["order"]
        receiver.issue(order["cpOrderId"], player.id)
        paid = browser.pay(order["orderId"], "wallet")
        assert paid.status_code == 200, paid.text
        assert paid.json()["order"]["state"] in ("paid", "delivered")
        assert paid.json()["balance"] == "90.02"
        assert browser.get("/me/balance").json()["balance"] == "90.02"
        # Paying again changes nothing.
        assert browser.pay(order["orderId"], "wallet").status_code == 200
        assert world.platform.player(player.id)["available"] == "90.02"

        row = world.order_row(order["orderId"])
        assert row["method"] == "wallet" and row["amount_minor"] == 998
        transaction = transaction_of(world, row["qw_transaction_id"])
        assert transaction["kind"] == "withdrawal" and transaction["state"] == "confirmed"
        assert transaction["mm_transaction_id"] == f"payment:{order['orderId']}"
        assert transaction["amount_minor"] == 998 and transaction["player_id"] == player.id
        assert ledger_of(world, row["qw_transaction_id"]) == [
            ("begin", "available", -998),
            ("begin", "held", 998),
            ("confirm", "held", -998),
            ("confirm", "partner", 998),
        ]
        report = world.platform.reconcile()
        assert report.ok, report.as_json()
        wait_for(lambda: world.order_row(order["orderId"])["state"] == "delivered", what="delivery")
        assert [o.cp_order_id for o in receiver.delivered] == [order["cpOrderId"]]
        delivered = receiver.delivered[0]
        assert delivered.uid == player.id and delivered.product_price == "4.99"
        assert delivered.server_id == "10001" and delivered.ext_params == "level=3&slot=2"


def test_insufficient_funds_are_refused(world: World) -> None:
    browser, token, player = open_game(world, balance="5.00")
    order = browser.order(token, productNumber=2).json()["order"]
    refused = browser.pay(order["orderId"], "wallet")
    assert refused.status_code == 409 and refused.json()["error"] == "insufficient_funds"
    row = world.order_row(order["orderId"])
    assert row["state"] == "created" and row["qw_transaction_id"] is None
    assert world.platform.player(player.id)["available"] == "5.00"
    assert world.platform.reconcile().ok


def test_concurrent_wallet_payments_never_overdraw(world: World) -> None:
    browser, token, player = open_game(world, balance="5.00")
    first = browser.order(token).json()["order"]["orderId"]
    second = browser.order(token).json()["order"]["orderId"]
    targets = [first, second] * 4
    with ThreadPoolExecutor(len(targets)) as pool:
        statuses = list(pool.map(lambda order_id: browser.pay(order_id, "wallet"), targets))
    assert all(r.status_code in (200, 409) for r in statuses), [r.text for r in statuses]
    states = sorted(
        world.order_row(o)["state"] in ("paid", "delivered", "failed") for o in (first, second)
    )
    assert states == [False, True]
    assert world.platform.player(player.id)["available"] == "0.01"
    assert world.platform.reconcile().ok


def test_sandbox_approve_is_paid_then_delivered(world: World, tmp_path: Path) -> None:
    with kit_receiver(tmp_path) as receiver:
        browser, token, player = open_game(
            world, callback_url=receiver.url, secret=receiver.secret, sandbox=True
        )
        order = browser.order(token, productPrice=0.5, productNumber=4).json()["order"]
        receiver.issue(order["cpOrderId"], player.id)
        started = browser.pay(order["orderId"], "sandbox_card", "approve")
        assert started.status_code == 200 and started.json()["order"]["state"] == "paying"
        assert browser.pay(order["orderId"], "wallet").status_code == 409  # already paying
        # The provider confirms asynchronously, after its delay.
        advance(world.platform.clock, 2.5)
        wait_for(lambda: world.order_row(order["orderId"])["state"] == "delivered", what="paid")
        assert browser.get(f"/payments/orders/{order['orderId']}").json()["order"]["state"] == (
            "delivered"
        )
        assert [(o.cp_order_id, o.product_price) for o in receiver.delivered] == [
            (order["cpOrderId"], "0.5")
        ]
        attempts = world.attempts(order["orderId"])
        assert [(a["attempt"], a["outcome"], a["http_status"]) for a in attempts] == [
            (1, "delivered", 200)
        ]
        # A card payment moves no wallet money.
        assert world.platform.player(player.id)["available"] == "100.00"


def test_sandbox_decline_is_declined_and_not_delivered(world: World, tmp_path: Path) -> None:
    with kit_receiver(tmp_path) as receiver:
        browser, token, player = open_game(
            world, callback_url=receiver.url, secret=receiver.secret, sandbox=True
        )
        order = browser.order(token).json()["order"]
        receiver.issue(order["cpOrderId"], player.id)
        assert browser.pay(order["orderId"], "sandbox_card", "decline").status_code == 200
        advance(world.platform.clock, 2.5)
        wait_for(lambda: world.order_row(order["orderId"])["state"] == "declined", what="decline")
        shown = browser.get(f"/payments/orders/{order['orderId']}").json()
        assert shown["order"]["payable"] and shown["methods"]
        assert world.attempts(order["orderId"]) == [] and receiver.delivered == []
        # A declined order may be paid another way.
        assert browser.pay(order["orderId"], "wallet").status_code == 200
        wait_for(lambda: receiver.delivered, what="delivery after the wallet payment")


def test_json_callback_format(world: World, tmp_path: Path) -> None:
    with kit_receiver(tmp_path, body_format="json") as receiver:
        browser, token, player = open_game(
            world, callback_url=receiver.url, secret=receiver.secret, callback_format="json"
        )
        order = browser.order(token, productPrice=12.3).json()["order"]
        receiver.issue(order["cpOrderId"], player.id)
        assert browser.pay(order["orderId"], "wallet").status_code == 200
        wait_for(lambda: receiver.delivered, what="JSON delivery")
        assert receiver.delivered[0].product_price == "12.3"


def test_partner_payment_currency(world: World) -> None:
    browser, token, _ = open_game(world, payment_currency="EUR", sandbox=True)
    created = browser.order(token, productPrice=1.25).json()
    assert created["order"]["currency"] == "EUR" and not created["order"]["walletPayable"]
    assert created["order"]["amount"] == "1.25"
    assert [m["method"] for m in created["methods"]] == ["sandbox_card"]
    refused = browser.pay(created["order"]["orderId"], "wallet")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_method"


def test_methods_are_the_partners(world: World) -> None:
    """A production partner offers what it lists, never the sandbox card."""
    browser, token, _ = open_game(world)
    created = browser.order(token).json()
    assert [m["method"] for m in created["methods"]] == ["wallet"]
    order_id = created["order"]["orderId"]
    refused = browser.pay(order_id, "sandbox_card", "approve")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_method"
    assert world.order_row(order_id)["state"] == "created"
    # A production partner priced in another currency than the wallet offers nothing.
    browser, token, _ = open_game(world, payment_currency="EUR")
    created = browser.order(token).json()
    assert created["methods"] == [] and not created["order"]["walletPayable"]
