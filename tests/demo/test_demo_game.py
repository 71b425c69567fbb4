"""The demo studio backend over HTTP against the real platform server, on both databases.

Every money test checks the platform's own ledger afterwards: the wallet row
(``platform.player``) and the reconciliation of every balance against the entries.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import httpx
import pytest

import qwallet.demo.game
from qwallet.demo import launch
from qwallet.demo.game import PACKS, DemoConfig

from .conftest import QUERY_AUTH, Demo, encode_callback, paid_callback


def assert_ledger_consistent(demo: Demo, player_id: str | None = None) -> None:
    wallet = demo.wallet(player_id)
    assert wallet["held"] == "0.00" and wallet["pendingIn"] == "0.00", wallet
    assert demo.platform.reconcile().ok


def test_session_and_balance(demo: Demo) -> None:
    response = demo.api("/api/session")
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["playerId"] == demo.player_id
    assert session["balance"] == {"amount": "100.00", "currencyCode": "XAG"}
    assert session["currencyCode"] == "XAG" and session["nickname"]
    assert demo.api("/api/balance").json() == {
        "balance": {"amount": "100.00", "currencyCode": "XAG"}
    }
    refused = demo.http.post("/api/session", json={"token": "00000000-no-such-session"})
    assert refused.status_code == 401 and refused.json()["error"] == "session"
    assert demo.http.post("/api/session", content=b"[1]").status_code == 400


def test_buy_item_takes_xag_and_grants_it(demo: Demo) -> None:
    response = demo.api("/api/buy", itemId="sword")
    assert response.status_code == 200, response.text
    bought = response.json()
    assert bought["balance"] == {"amount": "95.00", "currencyCode": "XAG"}
    # "confirmed" tells whether the confirm was acknowledged inline; the outbox worker may
    # have sent it instead, so the platform's ledger is what is checked.
    assert bought["mmTransactionId"].startswith("demo-")
    assert demo.wallet()["available"] == "95.00"
    assert_ledger_consistent(demo)
    inventory = demo.api("/api/inventory").json()
    assert [(i["id"], i["quantity"]) for i in inventory["items"]] == [("sword", 1)]
    assert inventory["grants"][0]["reference"] == bought["mmTransactionId"]
    assert inventory["grants"][0]["source"] == "shop"
    assert demo.api("/api/balance").json()["balance"]["amount"] == "95.00"


def test_query_withdrawal_answers_for_a_purchase(demo: Demo) -> None:
    bought = demo.api("/api/buy", itemId="potion").json()
    query = {
        "mmTransactionId": bought["mmTransactionId"],
        "qwTransactionId": bought["qwTransactionId"],
    }
    answer = demo.http.post("/query-withdrawal", json=query, auth=QUERY_AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"mmTransactionId": bought["mmTransactionId"], "status": "CONFIRMED"}
    unknown = demo.http.post(
        "/query-withdrawal",
        json={"mmTransactionId": "demo-nope", "qwTransactionId": "x"},
        auth=QUERY_AUTH,
    )
    assert unknown.json()["status"] == "UNKNOWN"
    assert demo.http.post("/query-withdrawal", json=query, auth=("qw", "bad")).status_code == 401


def test_unique_item_and_insufficient_funds_cost_nothing(demo: Demo) -> None:
    player_id, token = demo.new_player("60.00")
    first = demo.http.post("/api/buy", json={"token": token, "itemId": "crown"})
    assert first.status_code == 200 and first.json()["balance"]["amount"] == "10.00"
    again = demo.http.post("/api/buy", json={"token": token, "itemId": "crown"})
    assert again.status_code == 409 and again.json()["error"] == "already_owned"
    poor = demo.http.post("/api/buy", json={"token": token, "itemId": "shield"})
    assert poor.status_code == 409 and poor.json()["error"] == "insufficient_funds"
    assert poor.json()["balance"] == {"amount": "10.00", "currencyCode": "XAG"}
    assert demo.wallet(player_id)["available"] == "10.00"
    assert_ledger_consistent(demo, player_id)
    unknown = demo.http.post("/api/buy", json={"token": token, "itemId": "gems"})
    assert unknown.status_code == 404  # not sold for XAG


def test_failed_grant_rolls_the_withdrawal_back(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DiskFull(Exception):
        pass

    async def broken_grant(*args: object, **kwargs: object) -> bool:
        raise DiskFull

    monkeypatch.setattr(demo.game.inventory, "grant", broken_grant)
    response = demo.api("/api/buy", itemId="shield")
    assert response.status_code == 500 and "nothing was charged" in response.json()["message"]
    assert demo.wallet()["available"] == "100.00"
    assert_ledger_consistent(demo)
    monkeypatch.undo()
    assert demo.api("/api/inventory").json()["items"] == []


def test_bonus_adds_to_the_balance(demo: Demo) -> None:
    response = demo.api("/api/bonus")
    assert response.status_code == 200, response.text
    bonus = response.json()
    assert bonus["amount"] == {"amount": "10.00", "currencyCode": "XAG"}
    assert bonus["balance"] in (
        {"amount": "110.00", "currencyCode": "XAG"},
        {"amount": "100.00", "currencyCode": "XAG"},  # the worker's confirm still in flight
    )
    assert demo.api("/api/bonus").status_code == 200  # no cooldown in this configuration
    assert demo.wallet()["available"] == "120.00"
    assert_ledger_consistent(demo)


def test_bonus_cooldown(demo: Demo) -> None:
    demo.game.config = dataclasses.replace(demo.game.config, bonus_cooldown_s=3600)
    assert demo.api("/api/bonus").status_code == 200
    again = demo.api("/api/bonus")
    assert again.status_code == 429 and again.json()["retryAfterS"] > 3500
    assert demo.wallet()["available"] == "110.00"


def test_purchase_message_and_delivered_pack_appear_once(demo: Demo) -> None:
    response = demo.api("/api/orders", packId="gems.large")
    assert response.status_code == 200
    # productPrice is a JSON number, exactly the catalog's digits.
    assert b'"productPrice":4.99' in response.content
    message = response.json()["message"]
    assert set(message) == {
        "serverId",
        "cpOrderId",
        "productId",
        "productName",
        "productDesc",
        "productNumber",
        "productPrice",
        "extParams",
    }
    assert isinstance(message["serverId"], int) and message["productNumber"] == 1
    assert message["productId"] == "gems.large" and isinstance(message["extParams"], str)
    assert json.loads(message["extParams"])["playerId"] == demo.player_id
    assert response.json()["targetOrigin"] == demo.game.config.origin
    waiting = demo.api("/api/inventory").json()
    assert [o["status"] for o in waiting["orders"]] == ["waiting"] and waiting["items"] == []
    assert waiting["orders"][0]["currencyCode"] == "XAG"

    # The platform delivers the paid order, twice (at-least-once).
    form = paid_callback(message["cpOrderId"], demo.player_id, "gems.large", "4.99")
    body, headers = encode_callback(form)
    for _ in range(2):
        delivered = demo.http.post("/pay/quantum", content=body, headers=headers)
        assert delivered.status_code == 200 and delivered.text == "success"
    inventory = demo.api("/api/inventory").json()
    assert [(i["id"], i["quantity"]) for i in inventory["items"]] == [("gems", 600)]
    assert [g["reference"] for g in inventory["grants"]] == [message["cpOrderId"]]
    assert [o["status"] for o in inventory["orders"]] == ["delivered"]

    # A JSON delivery of another order works too (the receiver accepts both).
    other = demo.order("gems.small")
    fields = paid_callback(other["cpOrderId"], demo.player_id, "gems.small", "0.99")
    assert demo.callback(fields, "json").text == "success"
    assert demo.items() == [("gems", 700)]


def test_bad_callbacks_deliver_nothing(demo: Demo) -> None:
    chest = demo.order("chest.gold")["cpOrderId"]
    forged = paid_callback(chest, demo.player_id, "chest.gold", "9.99")
    forged["productPrice"] = "0.01"  # the header is recomputed by encode_callback; sign is not
    response = demo.callback(forged)
    assert response.status_code == 403 and response.json()["error"] == "bad_sign"
    # Correctly signed, but not what the studio issued: refused before anything is recorded.
    cheap = paid_callback(chest, demo.player_id, "chest.gold", "0.01")
    response = demo.callback(cheap)
    assert response.status_code == 422 and response.json()["error"] == "order_mismatch"
    unknown = paid_callback("d" * 32, demo.player_id, "no.such.pack", "1.00")
    response = demo.callback(unknown)
    assert response.status_code == 422 and response.json()["error"] == "not_issued"
    assert demo.items() == []
    # None of that was recorded: the genuine callback still delivers.
    genuine = paid_callback(chest, demo.player_id, "chest.gold", "9.99")
    assert demo.callback(genuine).text == "success"
    assert demo.items() == [("chest", 1)]


def test_client_page_and_assets(demo: Demo) -> None:
    page = demo.http.get("/", params={"token": demo.token, "language": "en", "currency": "XAG"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert f"frame-ancestors 'self' {demo.game.config.origin}" in csp
    assert "script-src 'self'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'id="game-config"' in page.text and "/static/game.js" in page.text
    config = json.loads(page.text.split('id="game-config">', 1)[1].split("</script>", 1)[0])
    assert config["platformOrigin"] == demo.game.config.origin
    assert {p["id"] for p in config["catalog"]["packs"]} == set(PACKS)
    script = demo.http.get("/static/game.js")
    assert script.status_code == 200 and "postMessage(data.message, config.platformOrigin)" in (
        script.text
    )
    assert demo.http.get("/static/game.css").status_code == 200
    assert demo.http.get("/healthz").json() == {"ok": True}
    assert demo.http.get("/api/catalog").json()["items"][0]["price"] == "2.50"


def test_demo_imports_only_the_kit() -> None:
    """The demo is a partner: nothing from the platform's server code."""
    forbidden = ("qwallet.api", "qwallet.service", "qwallet.store", "qwallet.web", "qwallet.domain")
    package = Path(qwallet.demo.game.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(forbidden), f"{source.name} imports {name}"


def test_config_from_env(tmp_path: Path) -> None:
    env = {
        "QWALLET_DEMO_PLATFORM_URL": "http://localhost:9000/",
        "QWALLET_DEMO_PASSWORD": "pw",
        "QWALLET_DEMO_CALLBACK_SECRET": "cs",
        "QWALLET_DEMO_QUERY_USERNAME": "qu",
        "QWALLET_DEMO_QUERY_PASSWORD": "qp",
        "QWALLET_DEMO_DATA_DIR": str(tmp_path),
        "QWALLET_DEMO_BONUS_AMOUNT": "2.50",
        "QWALLET_DEMO_PACK_CURRENCY": "EUR",
    }
    config = DemoConfig.from_env(env)
    assert config.username == "demo" and config.origin == "http://localhost:9000"
    assert str(config.bonus_amount) == "2.50" and config.kit_db_path == tmp_path / "kit.db"
    assert config.pack_currency == "EUR"
    assert DemoConfig.from_env(env, platform_origin="https://lobby.example").origin == (
        "https://lobby.example"
    )
    with pytest.raises(ValueError, match="QWALLET_DEMO_PASSWORD"):
        DemoConfig.from_env({})


def test_standalone_http_client_cannot_frame(demo: Demo) -> None:
    """Only the platform may embed the game (and loopback's other spelling of it)."""
    csp = demo.http.get("/").headers["content-security-policy"]
    ancestors = csp.split("frame-ancestors", 1)[1]
    assert "*" not in ancestors
    assert httpx.URL(demo.game.config.platform_url).host in ancestors


def test_demo_partner_command_needs_its_secrets(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qwallet.cli import app

    result = CliRunner().invoke(
        app, ["demo-partner", "--data-dir", str(tmp_path), "--password", "pw"], env={}
    )
    assert result.exit_code == 2
    assert "QWALLET_DEMO_CALLBACK_SECRET" in result.output


def test_the_launcher_points_the_demo_partner_at_the_games_own_paths() -> None:
    """``qwallet demo`` registers the game's callback and Query Withdrawal URLs without loading
    the game: its copies of the paths are the game's."""
    config = launch.DemoPartnerConfig.fresh("127.0.0.1", 8001)
    assert config.callback_url == f"http://127.0.0.1:8001{qwallet.demo.game.CALLBACK_PATH}"
    assert config.query_url == f"http://127.0.0.1:8001{qwallet.demo.game.QUERY_PATH}"
    assert launch.demo_partner_available()
