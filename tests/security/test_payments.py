"""Security regressions of the payment side (issue 10, findings 1-4), over a real server on
loopback, on SQLite and PostgreSQL.

1. the sandbox card paid production partners: a player posted their own purchase message and paid
   it with ``{"method": "sandbox_card", "option": "approve"}``;
2. blocked players could still create orders and pay;
3. the charge currency followed the player's wallet, and the callback carried neither amount nor
   currency;
4. plain-http callback URLs were accepted and used for any partner.

The partner side is a plain recording receiver (not the kit), so the tests see exactly what the
platform sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from qwallet.clock import ManualClock
from qwallet.payments.callback import md5_sign
from qwallet.service import partners
from qwallet.settings import Settings
from qwallet.store.factory import open_store
from qwallet.store.sqlite import sqlite_path
from qwallet.web.player import PlayerWeb
from tests.conftest import LiveServer, Platform, free_port, fresh_database_url
from tests.integration.test_cli_and_operator_api import QWALLET, qwallet
from tests.partner.conftest import serve

# The payment tests' settings: a worker ticking every 50 ms, the sandbox confirming after 2 s.
from tests.web.conftest import World, advance, set_partner, settings, wait_for  # noqa: F401

SECRET = "MKiLHWZvGPTq2258"


@pytest.fixture
def world(platform: Platform, server: LiveServer) -> Iterator[World]:
    world = World(platform, server)
    yield world
    for browser in world.browsers:
        browser.close()


@dataclass
class Recorder:
    """A partner's callback endpoint that records every request and answers ``success``."""

    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    await receive()
                    await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        body = await request.body()
        with self.lock:
            self.requests.append((dict(request.headers), body))
        await PlainTextResponse("success")(scope, receive, send)

    def fields(self) -> list[dict[str, str]]:
        with self.lock:
            return [
                dict(parse_qsl(body.decode(), keep_blank_values=True)) for _, body in self.requests
            ]


@contextmanager
def recorder() -> Iterator[Recorder]:
    app = Recorder()
    with serve(app) as url:
        app.url = f"{url}/pay/quantum"
        yield app


def new_partner(
    world: World,
    receiver: Recorder | None = None,
    *,
    currency: str = "XAG",
    sandbox: bool = False,
    methods: tuple[str, ...] = ("wallet",),
) -> str:
    """A partner with a game client, created the way the operator's CLI and console do."""
    name = f"sec-{secrets.token_hex(4)}"
    platform = world.platform
    platform.run(
        partners.create_partner(
            platform.store,
            name,
            platform.clock.now_ms(),
            client_url="http://127.0.0.1:9/game/",
            callback_url=None if receiver is None else receiver.url,
            payment_currency=platform.settings.currency_registry[currency],
            sandbox=sandbox,
            payment_methods=methods,
            # The recording receiver listens on loopback without TLS.
            allow_http_callback=True,
            operator="test",
        )
    )
    set_partner(platform, name, callback_secret=SECRET)
    return name


def signed_in(world: World, game: str, balance: str = "100.00", currency: str = "XAG") -> Any:
    player = world.player(balance, currency)
    browser = world.browser(player)
    return browser, browser.play(game)["token"], player


def sql(platform: Platform, query: str, *args: object) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with platform.store.transaction() as tx:
            return [dict(row) for row in await tx.fetch(query, *args)]

    return platform.run(go())


def let_the_worker_run(world: World, seconds: float = 3.0) -> None:
    """Past the sandbox delay, then several worker ticks (50 ms apart) of real time."""
    advance(world.platform.clock, seconds)
    time.sleep(0.6)


def write_around_the_check(database_url: str, partner: str, methods: str) -> None:
    """Store ``methods`` for a non-sandbox partner as if the CHECK had been bypassed (a restored
    dump, a hand-made UPDATE): the platform must still refuse to use them."""
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(sqlite_path(database_url))
        try:
            connection.execute("PRAGMA ignore_check_constraints = ON")
            connection.execute(
                "UPDATE partners SET payment_methods = ? WHERE name = ?", (methods, partner)
            )
            connection.commit()
        finally:
            connection.close()
        return
    import asyncpg

    async def go() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(
                "ALTER TABLE partners DROP CONSTRAINT IF EXISTS ck_partners_sandbox_methods"
            )
            await connection.execute(
                "UPDATE partners SET payment_methods = $1 WHERE name = $2", methods, partner
            )
        finally:
            await connection.close()

    asyncio.run(go())


def restore_the_check(database_url: str, partner: str) -> None:
    """Put the partner back to ``wallet`` and, on PostgreSQL, the CHECK back."""
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(sqlite_path(database_url))
        try:
            connection.execute(
                "UPDATE partners SET payment_methods = 'wallet' WHERE name = ?", (partner,)
            )
            connection.commit()
        finally:
            connection.close()
        return
    import asyncpg

    async def go() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(
                "UPDATE partners SET payment_methods = 'wallet' WHERE name = $1", partner
            )
            await connection.execute(
                "ALTER TABLE partners ADD CONSTRAINT ck_partners_sandbox_methods CHECK"
                " (sandbox = 1 OR (',' || payment_methods || ',') NOT LIKE '%,sandbox_card,%')"
            )
        finally:
            await connection.close()

    asyncio.run(go())


# -- finding 1 ------------------------------------------------------------------------------------


@pytest.mark.finding("1")
def test_sandbox_card_never_pays_a_production_partner(world: World, database_url: str) -> None:
    with recorder() as receiver:
        production = new_partner(world, receiver)
        browser, token, player = signed_in(world, production)

        # The attack from the issue: the player posts their own purchase message (any price)…
        created = browser.order(token, productPrice=999.99, productId="gems.max")
        assert created.status_code == 201, created.text
        order_id = created.json()["order"]["orderId"]
        # …the sandbox card is not even offered…
        assert [m["method"] for m in created.json()["methods"]] == ["wallet"]
        # …and the hand-made payment request is refused, changing nothing.
        refused = browser.post_json(
            f"/payments/orders/{order_id}/pay", {"method": "sandbox_card", "option": "approve"}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_method"
        let_the_worker_run(world)
        row = world.order_row(order_id)
        assert (row["state"], row["method"], row["provider_reference"]) == ("created", None, None)
        assert world.attempts(order_id) == [] and receiver.requests == []

        # The CHECK refuses the sandbox card for a production partner, whoever writes the row…
        with pytest.raises(Exception, match=r"(?i)check"):
            set_partner(world.platform, production, payment_methods="wallet,sandbox_card")
        # …and the operator's tools refuse it with a clear message.
        with pytest.raises(partners.OperatorError, match="only a sandbox partner"):
            world.platform.run(
                partners.update_partner(
                    world.platform.store,
                    production,
                    partners.PartnerUpdate(payment_methods=["wallet", "sandbox_card"]),
                    operator="test",
                    now_ms=world.platform.clock.now_ms(),
                )
            )

        # A row written around the check still cannot make the payment start.
        write_around_the_check(database_url, production, "wallet,sandbox_card")
        try:
            assert browser.get(f"/payments/orders/{order_id}").json()["methods"] == [
                {"method": "wallet", "label": "Pay from wallet balance", "options": []}
            ]
            refused = browser.pay(order_id, "sandbox_card", "approve")
            assert refused.status_code == 403 and refused.json()["error"] == "sandbox_refused"
            assert world.order_row(order_id)["state"] == "created"

            # Defence in depth: a sandbox payment already pending for a production partner (as
            # if started before the check) is declined by the worker, never paid or delivered…
            sql(
                world.platform,
                "UPDATE payment_orders SET state = 'paying', method = 'sandbox_card',"
                " provider_reference = $1, updated_at_ms = $2 WHERE id = $3",
                f"sandbox:{secrets.token_hex(8)}:approve",
                world.platform.clock.now_ms(),
                order_id,
            )
            let_the_worker_run(world)
            assert wait_for(lambda: world.order_row(order_id)["state"] == "declined")
            assert world.order_row(order_id)["paid_at_ms"] is None
            # …and a sandbox-paid order of a production partner is never announced to it.
            sql(
                world.platform,
                "UPDATE payment_orders SET state = 'paid', next_delivery_at_ms = $1,"
                " delivery_attempts = 0 WHERE id = $2",
                world.platform.clock.now_ms(),
                order_id,
            )
            attempt = wait_for(lambda: world.attempts(order_id), what="the refused attempt")
            assert attempt[0]["http_status"] is None
            assert "not a sandbox partner" in attempt[0]["error"]
            assert receiver.requests == []
        finally:
            sql(
                world.platform,
                "UPDATE payment_orders SET state = 'failed', next_delivery_at_ms = NULL"
                " WHERE id = $1",
                order_id,
            )
            restore_the_check(database_url, production)

        # The player's wallet and the ledger never moved.
        assert world.platform.player(player.id)["available"] == "100.00"
        assert world.platform.reconcile().ok

        # A sandbox partner (a studio's test integration, the demo) still has the sandbox card,
        # and every callback says which provider paid.
        sandbox = new_partner(world, receiver, sandbox=True, methods=("wallet", "sandbox_card"))
        browser, token, _ = signed_in(world, sandbox)
        order = browser.order(token).json()
        assert [m["method"] for m in order["methods"]] == ["wallet", "sandbox_card"]
        assert browser.pay(order["order"]["orderId"], "sandbox_card", "approve").status_code == 200
        advance(world.platform.clock, 2.5)
        wait_for(lambda: receiver.requests, what="the sandbox callback")
        (sent,) = receiver.fields()
        assert sent["cpOrderId"] == order["order"]["cpOrderId"]
        assert sent["provider"] == "sandbox_card"


@pytest.mark.finding("1")
def test_serve_refuses_to_start_with_a_sandbox_method_on_a_production_partner(
    backend: str, tmp_path: Path
) -> None:
    for url in fresh_database_url(backend, tmp_path):
        name = "prod-studio"
        created = qwallet(url, "partners", "create", name, "--payment-currency", "EUR")
        assert created.returncode == 0, created.stderr
        # The operator's CLI refuses the sandbox card for a production partner…
        refused = qwallet(url, "partners", "update", name, "--payment-methods",
                          "wallet,sandbox_card", check=False)  # fmt: skip
        assert refused.returncode == 2 and "only a sandbox partner" in refused.stderr
        # …so the row is written around the check.
        write_around_the_check(url, name, "wallet,sandbox_card")

        port = free_port()
        import os
        import subprocess

        env = {
            **os.environ,
            "QWALLET_DATABASE_URL": url,
            "QWALLET_SECRET_KEY": secrets.token_urlsafe(32),
        }
        started = subprocess.run(
            [QWALLET, "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert started.returncode == 3, started.stderr
        assert "refusing to start" in started.stderr and name in started.stderr

        # The application's start-up (any other way of running it) refuses too.
        async def start_player_web(url: str = url) -> None:
            app_settings = Settings(database_url=url, payment_worker_interval_s=0.05)
            store = await open_store(app_settings)
            web = PlayerWeb(app_settings, ManualClock(start_ms=time.time_ns() // 1_000_000))
            try:
                await web.start(store)
            finally:
                await web.stop()
                await store.close()

        with pytest.raises(RuntimeError, match=r"refusing to start: partner\(s\) prod-studio"):
            asyncio.run(start_player_web())

        # Once fixed with the CLI, nothing is in the way.
        fixed = qwallet(url, "partners", "update", name, "--payment-methods", "wallet", "--json")
        assert json.loads(fixed.stdout)["changed"] == {"paymentMethods": "wallet"}
        listed = json.loads(qwallet(url, "partners", "list", "--json").stdout)["partners"]
        assert [(p["name"], p["sandbox"], p["paymentMethods"]) for p in listed] == [
            (name, False, ["wallet"])
        ]
        if backend == "postgres":
            restore_the_check(url, name)


# -- finding 2 ------------------------------------------------------------------------------------


@pytest.mark.finding("2")
def test_blocked_players_can_neither_order_nor_pay(world: World) -> None:
    with recorder() as receiver:
        game = new_partner(world, receiver, sandbox=True, methods=("wallet", "sandbox_card"))
        browser, token, player = signed_in(world, game)
        first = browser.order(token).json()["order"]["orderId"]
        second = browser.order(token).json()["order"]["orderId"]

        # The block lands after sign-in and after the page checks (the race the issue names):
        # only the status changes, nothing else is revoked, so the payment's own checks decide.
        sql(world.platform, "UPDATE players SET status = 'blocked' WHERE id = $1", player.id)
        before = sql(world.platform, "SELECT COUNT(*) AS n FROM payment_orders")[0]["n"]
        created = browser.order(token)
        assert created.status_code == 403 and created.json()["error"] == "blocked"
        assert sql(world.platform, "SELECT COUNT(*) AS n FROM payment_orders")[0]["n"] == before
        for order_id, method, option in (
            (first, "wallet", None),
            (second, "sandbox_card", "approve"),
        ):
            refused = browser.pay(order_id, method, option)
            assert refused.status_code == 403 and refused.json()["error"] == "blocked"
            assert world.order_row(order_id)["state"] == "created"
        let_the_worker_run(world)
        assert receiver.requests == []
        assert world.platform.player(player.id)["available"] == "100.00"

        # Unblocked, the same requests go through.
        sql(world.platform, "UPDATE players SET status = 'active' WHERE id = $1", player.id)
        assert browser.pay(first, "wallet").status_code == 200
        wait_for(lambda: receiver.requests, what="the callback")

        # The operator's block (whatever else it revokes) leaves the player no way to pay.
        world.platform.block(player.id)
        assert browser.order(token).status_code in (401, 403)
        assert browser.pay(second, "sandbox_card", "approve").status_code in (401, 403)
        let_the_worker_run(world)
        assert world.order_row(second)["state"] == "created"
        assert len(receiver.requests) == 1


# -- finding 3 ------------------------------------------------------------------------------------


@pytest.mark.finding("3")
def test_the_charge_is_in_the_partners_currency_and_the_callback_says_so(world: World) -> None:
    with recorder() as receiver:
        game = new_partner(world, receiver, currency="EUR", sandbox=True,
                           methods=("wallet", "sandbox_card"))  # fmt: skip
        orders = []
        for wallet_currency in ("XAG", "EUR"):
            browser, token, _ = signed_in(world, game, currency=wallet_currency)
            assert browser.play(game)["paymentDecimals"] == 2
            created = browser.order(token, productPrice=0.99, productNumber=2).json()
            # The same pack costs the same for every player, in the partner's currency.
            assert (created["order"]["currency"], created["order"]["amount"]) == ("EUR", "1.98")
            methods = [m["method"] for m in created["methods"]]
            # The wallet pays only when it holds the partner's currency.
            assert methods == (["sandbox_card"] if wallet_currency == "XAG" else
                               ["wallet", "sandbox_card"])  # fmt: skip
            refused = browser.pay(created["order"]["orderId"], "wallet")
            if wallet_currency == "XAG":
                assert refused.status_code == 400 and refused.json()["error"] == "invalid_method"
                assert (
                    browser.pay(created["order"]["orderId"], "sandbox_card", "approve").status_code
                    == 200
                )
            else:
                assert refused.status_code == 200, refused.text
            orders.append(created["order"])
        advance(world.platform.clock, 2.5)
        wait_for(lambda: len(receiver.requests) == 2, what="both callbacks")
        by_order = {f["cpOrderId"]: (headers, body, f) for (headers, body), f in
                    zip(receiver.requests, receiver.fields(), strict=True)}  # fmt: skip
        for order, provider in zip(orders, ("sandbox_card", "wallet"), strict=True):
            headers, body, sent = by_order[order["cpOrderId"]]
            assert (sent["amount"], sent["currencyCode"], sent["provider"]) == (
                "1.98",
                "EUR",
                provider,
            )
            assert sent["productPrice"] == "0.99"
            # The documented MD5 is unchanged…
            assert sent["sign"] == md5_sign(sent["cpOrderId"], sent["serverId"], sent["uid"],
                                            "0.99", sent["productId"], sent["ts"], SECRET)  # fmt: skip
            # …and X-QW-Signature covers the new fields: changing the amount breaks it.
            t, v1 = (part.split("=", 1)[1] for part in headers["x-qw-signature"].split(","))
            assert v1 == hmac_hex(t, body)
            forged = body.replace(b"amount=1.98", b"amount=0.01")
            assert forged != body and hmac_hex(t, forged) != v1

        # A partner without a payment currency takes no order (a row from before it was required).
        legacy = new_partner(world, receiver)
        sql(world.platform, "UPDATE partners SET payment_currency = NULL WHERE name = $1", legacy)
        browser, token, _ = signed_in(world, legacy)
        before = sql(world.platform, "SELECT COUNT(*) AS n FROM payment_orders")[0]["n"]
        refused = browser.order(token)
        assert refused.status_code == 409 and refused.json()["error"] == "no_payment_currency"
        assert "no payment currency" in refused.json()["message"]
        assert sql(world.platform, "SELECT COUNT(*) AS n FROM payment_orders")[0]["n"] == before

        # The game page validates prices with the partner's currency's decimals.
        yen = new_partner(world, receiver, currency="JPY", sandbox=True,
                          methods=("sandbox_card",))  # fmt: skip
        browser, token, _ = signed_in(world, yen)
        assert browser.play(yen)["paymentDecimals"] == 0
        assert browser.order(token, productPrice=0.99).status_code == 400
        assert browser.order(token, productPrice=120).json()["order"]["amount"] == "120"


def hmac_hex(t: str, body: bytes) -> str:
    return hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


@pytest.mark.finding("3")
def test_payment_currency_is_a_required_known_partner_setting(database_url: str) -> None:
    name = f"cur-{secrets.token_hex(3)}"
    missing = qwallet(database_url, "partners", "create", name, check=False)
    assert missing.returncode == 2 and "payment currency is required" in missing.stderr
    unknown = qwallet(database_url, "partners", "create", name, "--payment-currency", "XYZ",
                      check=False)  # fmt: skip
    assert unknown.returncode == 2 and "unknown payment currency 'XYZ'" in unknown.stderr
    qwallet(database_url, "partners", "create", name, "--payment-currency", "eur")
    qwallet(database_url, "partners", "update", name, "--payment-currency", "GBP")
    listed = json.loads(qwallet(database_url, "partners", "list", "--json").stdout)["partners"]
    assert [p["paymentCurrency"] for p in listed if p["name"] == name] == ["GBP"]


# -- finding 4 (platform part) --------------------------------------------------------------------


@pytest.mark.finding("4")
def test_callback_urls_must_be_https_unless_allowed(world: World, database_url: str) -> None:
    # The operator's tools refuse a plain-http callback URL unless it is explicitly allowed.
    name = f"cb-{secrets.token_hex(3)}"
    plain = "http://mm-gw.example/pay/quantum"  # the documentation's own example is http
    refused = qwallet(database_url, "partners", "create", name, "--payment-currency", "XAG",
                      "--callback-url", plain, check=False)  # fmt: skip
    assert refused.returncode == 2 and "must be https" in refused.stderr
    qwallet(database_url, "partners", "create", name, "--payment-currency", "XAG",
            "--callback-url", "https://mm-gw.example/pay/quantum")  # fmt: skip
    refused = qwallet(database_url, "partners", "update", name, "--callback-url", plain,
                      check=False)  # fmt: skip
    assert refused.returncode == 2 and "must be https" in refused.stderr
    allowed = qwallet(database_url, "partners", "update", name, "--callback-url", plain,
                      "--allow-http-callback", "--json")  # fmt: skip
    assert json.loads(allowed.stdout)["changed"] == {"callbackUrl": plain,
                                                     "allowHttpCallback": True}  # fmt: skip
    refused = qwallet(database_url, "partners", "update", name, "--no-allow-http-callback",
                      check=False)  # fmt: skip
    assert refused.returncode == 2 and "must be https" in refused.stderr

    # The delivery worker does not send to a plain-http URL of a partner that does not allow it
    # (a row from before the rule), and records why.
    with recorder() as receiver:
        game = new_partner(world, receiver)
        set_partner(world.platform, game, allow_http_callback=0)
        browser, token, _ = signed_in(world, game)
        order_id = browser.order(token).json()["order"]["orderId"]
        assert browser.pay(order_id, "wallet").status_code == 200
        attempt = wait_for(lambda: world.attempts(order_id), what="the refused attempt")
        assert attempt[0]["outcome"] == "retry" and attempt[0]["http_status"] is None
        assert "plain-http callback URL not allowed" in attempt[0]["error"]
        assert receiver.requests == []
        # The operator allows it explicitly: the next retry is delivered.
        world.platform.run(
            partners.update_partner(
                world.platform.store,
                game,
                partners.PartnerUpdate(allow_http_callback=True),
                operator="test",
                now_ms=world.platform.clock.now_ms(),
            )
        )
        advance(world.platform.clock, 5.5)
        wait_for(lambda: world.order_row(order_id)["state"] == "delivered", what="delivery")
        assert len(receiver.requests) == 1
