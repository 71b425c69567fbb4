"""Every console action leaves exactly one audit entry, written in the transaction of the change:
a change whose entry the database refuses is not made (on both databases)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Platform
from tests.integration.test_cli_and_operator_api import audit_of, refusing_audit_entries, rows_of

from .conftest import Console

PARTNER_FORM = {
    "client_url": "https://games.example/play",
    "callback_url": "https://studio.example/pay",
    "query_url": "https://studio.example/query",
    "query_username": "qw",
    "payment_currency": "XAG",
    "payment_methods": "wallet",
}


def one_entry(
    platform: Platform, console: Console, action: str, target: str | None,
    act: Callable[[], httpx.Response],
) -> dict[str, Any]:  # fmt: skip
    before = audit_of(platform, console.username)
    response = act()
    assert response.status_code in (200, 303), response.text
    after = audit_of(platform, console.username)
    assert len(after) == len(before) + 1, after[: len(after) - len(before)]
    assert (after[0]["action"], after[0]["target"]) == (action, target)
    return after[0]


def test_every_console_action_leaves_one_entry(
    console: Console, platform: Platform, new_wallet: Any
) -> None:
    wallet = new_wallet(balance="30.00")
    player = wallet.player_id
    one_entry(platform, console, "player.block", player,
              lambda: console.post(f"/admin/players/{player}/block", {"blocked": "1"}))  # fmt: skip
    one_entry(platform, console, "player.unblock", player,
              lambda: console.post(f"/admin/players/{player}/block", {"blocked": "0"}))  # fmt: skip
    entry = one_entry(platform, console, "player.adjust", player, lambda: console.post(
        f"/admin/players/{player}/adjust", {"amount": "2.50", "reason": "goodwill"}))  # fmt: skip
    assert json.loads(entry["details"])["amount"] == "2.50"

    name = f"aud-{secrets.token_hex(3)}"
    entry = one_entry(platform, console, "partner.create", name,
                      lambda: console.post("/admin/partners", {"name": name, **PARTNER_FORM}))  # fmt: skip
    assert json.loads(entry["details"])["queryUsername"] == "qw"
    one_entry(platform, console, "partner.update", name, lambda: console.post(
        f"/admin/partners/{name}", {**PARTNER_FORM, "query_url": "https://studio.example/q2"}))  # fmt: skip
    for what, action in (
        ("wallet", "partner.rotate_wallet_password"),
        ("callback", "partner.rotate_callback_secret"),
        ("query", "partner.rotate_query_secret"),
    ):
        one_entry(platform, console, action, name,
                  lambda what=what: console.post(f"/admin/partners/{name}/rotate", {"what": what}))  # fmt: skip
    one_entry(platform, console, "partner.revoke_old_credentials", name,
              lambda: console.post(f"/admin/partners/{name}/revoke-old"))  # fmt: skip

    wallet.token = platform.create_session(player, wallet.username)  # the block revoked the old
    status, body = wallet.call(
        "withdraw",
        {"token": wallet.token, "mmTransactionId": f"h-{name}",
         "amount": {"amount": 3.00, "currencyCode": "XAG"}, "txDescription": "held"},
    )  # fmt: skip
    assert status == 200 and "qwTransactionId" in body, body
    qw_id = body["qwTransactionId"]
    entry = one_entry(platform, console, "transaction.resolve", qw_id, lambda: console.post(
        f"/admin/transactions/{qw_id}/resolve", {"decision": "confirm", "reason": "studio log"}))  # fmt: skip
    assert json.loads(entry["details"])["result"] == "confirmed"
    one_entry(platform, console, "resolver.run", None,
              lambda: console.post("/admin/holds/run"))  # fmt: skip
    # A reconciliation is a background job: its start is the action's entry, and the run's
    # own entry (with the result) follows when the job ends.
    before = audit_of(platform, console.username)
    assert console.post("/admin/reconcile").status_code == 303
    deadline = time.monotonic() + 30
    while len(after := audit_of(platform, console.username)) < len(before) + 2:
        assert time.monotonic() < deadline, after
        time.sleep(0.1)
    assert [(e["action"], e["target"]) for e in after[:2]] == [
        ("reconcile.run", None),
        ("reconcile.start", None),
    ]
    assert platform.player(player)["available"] == "29.50"

    # A refused action writes nothing.
    before = audit_of(platform, console.username)
    console.post(f"/admin/players/{player}/adjust", {"amount": "-1000.00", "reason": "too much"})
    console.post("/admin/partners", {"name": name, **PARTNER_FORM})  # already exists
    console.post(f"/admin/partners/{name}/rotate", {"what": "nonsense"})
    assert audit_of(platform, console.username) == before


def test_an_adjustment_whose_audit_entry_fails_moves_no_money(
    console: Console, platform: Platform
) -> None:
    """The bug: the money was committed first and its audit entry in a second transaction. Now
    the database refusing the entry (a trigger) refuses the adjustment with it."""
    player = platform.create_player("40.00")
    with refusing_audit_entries(platform, player):
        failed = console.post(
            f"/admin/players/{player}/adjust", {"amount": "-15.00", "reason": "chargeback"}
        )
        assert failed.status_code == 500
    assert platform.player(player)["available"] == "40.00"
    assert not rows_of(
        platform, "SELECT id FROM adjustments WHERE player_id = $1 AND reason = $2",
        player, "chargeback",
    )  # fmt: skip
    assert platform.reconcile().ok
    done = console.post(
        f"/admin/players/{player}/adjust", {"amount": "-15.00", "reason": "chargeback"}
    )
    assert done.status_code == 303 and platform.player(player)["available"] == "25.00"


def test_a_partner_whose_audit_entry_fails_is_not_created(
    console: Console, platform: Platform
) -> None:
    """Creation, credentials, callback secret, Query credentials and the entry: one
    transaction (the console used to write the secrets and the entry in a second one)."""
    name = f"refused-{secrets.token_hex(3)}"
    with refusing_audit_entries(platform, name):
        failed = console.post("/admin/partners", {"name": name, **PARTNER_FORM})
        assert failed.status_code == 500
    assert not rows_of(platform, "SELECT id FROM partners WHERE name = $1", name)
    assert not rows_of(platform, "SELECT id FROM partner_credentials WHERE username = $1", name)
