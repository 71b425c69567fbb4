"""The admin console over real HTTP: sign-in, CSRF, audit, and each page's actions."""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from typing import Any

import httpx
import pytest

from qwallet.service import audit
from qwallet.service.credentials import verify_password
from tests.conftest import LiveServer, Platform

from .conftest import Console, csrf_of

PAGES = [
    "/admin/",
    "/admin/players",
    "/admin/players/demo-x",
    "/admin/transactions",
    "/admin/transactions/x",
    "/admin/orders",
    "/admin/orders/x",
    "/admin/partners",
    "/admin/holds",
    "/admin/reconcile",
    "/admin/audit",
]
ACTIONS = [
    "/admin/logout",
    "/admin/players/p/block",
    "/admin/players/p/adjust",
    "/admin/transactions/x/resolve",
    "/admin/orders/x/redeliver",
    "/admin/partners",
    "/admin/partners/x",
    "/admin/partners/x/rotate",
    "/admin/partners/x/revoke-old",
    "/admin/holds/run",
    "/admin/reconcile",
]


def audit_rows(platform: Platform, **filters: Any) -> list[dict[str, Any]]:
    rows = platform.run(audit.entries(platform.store, limit=500, **filters))
    return [dict(row) for row in rows]


def sql(platform: Platform, query: str, *args: object) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with platform.store.transaction() as tx:
            return [dict(r) for r in await tx.fetch(query, *args)]

    return platform.run(go())


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_sign_in(server: LiveServer, path: str) -> None:
    response = httpx.get(server.url + path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=")


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_needs_sign_in_and_csrf(
    console: Console, server: LiveServer, path: str
) -> None:
    anonymous = httpx.post(server.url + path, data={"csrf_token": "x"}, follow_redirects=False)
    assert anonymous.status_code == 403
    without = console.client.post(path, data={"reason": "x", "amount": "1.00"})
    assert without.status_code == 403
    wrong = console.client.post(path, data={"csrf_token": "forged", "reason": "x"})
    assert wrong.status_code == 403
    assert console.get("/admin/").status_code == 200  # still signed in


def test_sign_in_and_out(server: LiveServer, platform: Platform, operator_account: Any) -> None:
    console = Console(server, *operator_account)
    # CSRF is required at sign-in too.
    no_csrf = console.client.post(
        "/admin/login", data={"username": console.username, "password": console.password}
    )
    assert no_csrf.status_code == 403
    token = csrf_of(console.get("/admin/login").text)
    wrong = console.client.post(
        "/admin/login",
        data={"csrf_token": token, "username": console.username, "password": "nope"},
    )
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    ok = console.sign_in()
    assert ok.status_code == 303
    page = console.get("/admin/")
    assert page.status_code == 200 and "Dashboard" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # The session's CSRF token changes at sign-in (no fixation).
    assert csrf_of(page.text) != token
    out = console.post("/admin/logout")
    assert out.status_code == 303 and out.headers["location"] == "/admin/login"
    assert console.get("/admin/").status_code == 303
    actions = [r["action"] for r in audit_rows(platform, operator=console.username)]
    assert {"sign_in", "sign_out", "sign_in.failed"} <= set(actions)
    console.close()


def test_sign_in_redirects_only_inside_the_console(
    server: LiveServer, operator_account: Any
) -> None:
    console = Console(server, *operator_account)
    token = csrf_of(console.get("/admin/login?next=//evil.example/x").text)
    response = console.client.post(
        "/admin/login",
        data={
            "csrf_token": token,
            "username": console.username,
            "password": console.password,
            "next": "//evil.example/x",
        },
    )
    assert response.headers["location"] == "/admin/"
    console.close()


def test_player_search_block_and_adjust(
    console: Console, platform: Platform, new_wallet: Any
) -> None:
    wallet = new_wallet(balance="50.00")
    player_id = wallet.player_id
    found = console.get("/admin/players", params={"q": player_id})
    assert player_id in found.text
    nickname = platform.player(player_id)["nickname"]
    # The start of the nickname, in another case (the search is a case-insensitive prefix).
    by_name = console.get("/admin/players", params={"q": nickname[:-1].upper()})
    assert player_id in by_name.text
    page = console.get(f"/admin/players/{player_id}")
    assert page.status_code == 200 and "50.00 XAG" in page.text

    # An adjustment without a reason is refused and changes nothing.
    refused = console.post(f"/admin/players/{player_id}/adjust", {"amount": "5.00", "reason": ""})
    assert refused.status_code == 303
    assert "needs a reason" in console.get(f"/admin/players/{player_id}").text
    assert platform.player(player_id)["available"] == "50.00"
    assert not sql(
        platform,
        "SELECT id FROM adjustments WHERE player_id = $1 AND reason <> 'initial balance'",
        player_id,
    )

    done = console.post(
        f"/admin/players/{player_id}/adjust", {"amount": "-12.50", "reason": "chargeback 77"}
    )
    assert done.status_code == 303
    assert platform.player(player_id)["available"] == "37.50"
    (adjustment,) = sql(
        platform,
        "SELECT id, amount_minor, operator, reason FROM adjustments"
        " WHERE player_id = $1 AND reason = 'chargeback 77'",
        player_id,
    )
    assert adjustment["amount_minor"] == -1250 and adjustment["operator"] == console.username
    entries = sql(
        platform,
        "SELECT account, amount_minor FROM ledger_entries WHERE adjustment_id = $1 ORDER BY id",
        adjustment["id"],
    )
    assert sorted((e["account"], e["amount_minor"]) for e in entries) == [
        ("available", -1250),
        ("operator", 1250),
    ]
    (entry,) = audit_rows(platform, action="player.adjust", target=player_id)
    assert entry["operator"] == console.username
    assert json.loads(entry["details"]) == {
        "adjustmentId": adjustment["id"],
        "amount": "-12.50",
        "currency": "XAG",
        "reason": "chargeback 77",
    }
    assert "chargeback 77" in console.get("/admin/audit").text
    too_much = console.post(
        f"/admin/players/{player_id}/adjust", {"amount": "-1000.00", "reason": "oops"}
    )
    assert too_much.status_code == 303
    assert "below zero" in console.get(f"/admin/players/{player_id}").text

    # Block: the Wallet API refuses the player (112 for a new session; the old one is revoked,
    # 110); unblock lets a new session play again.
    console.post(f"/admin/players/{player_id}/block", {"blocked": "1", "reason": "fraud check"})
    assert platform.player(player_id)["status"] == "blocked"
    _status, body = wallet.call("getBalance", {"token": wallet.token})
    assert body["errorCode"] == 110
    wallet.token = platform.create_session(player_id, wallet.username)
    _status, body = wallet.call("getBalance", {"token": wallet.token})
    assert body["errorCode"] == 112
    console.post(f"/admin/players/{player_id}/block", {"blocked": "0"})
    assert platform.player(player_id)["status"] == "active"
    assert wallet.balance() == "37.5"
    actions = [r["action"] for r in audit_rows(platform, target=player_id)]
    assert actions[:2] == ["player.unblock", "player.block"]
    assert platform.reconcile().ok


def test_partner_creation_shows_secrets_once(console: Console, platform: Platform) -> None:
    name = f"acme-{secrets.token_hex(3)}"
    created = console.post(
        "/admin/partners",
        {
            "name": name,
            "display_name": "Acme Games",
            "client_url": "https://games.acme.example/play",
            "callback_url": "https://acme.example/pay/quantum",
            "query_url": "https://acme.example/qw/query",
            "query_username": "qw-platform",
            "query_password": "",
            "ip_allow": "203.0.113.0/24, 198.51.100.7",
            "payment_currency": "EUR",
            "payment_methods": "wallet",
        },
    )
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    shown = dict(
        (label.strip(), value)
        for label, value in __import__("re").findall(
            r"<th>([^<]+)</th><td><code class=\"secret\" data-secret>([^<]+)</code>", created.text
        )
    )
    wallet_password = shown["Wallet API password"]
    callback_secret = shown["Payment callback secret"]
    query_password = shown["Query Withdrawal password (platform at the partner)"]
    (row,) = sql(platform, "SELECT * FROM partners WHERE name = $1", name)
    assert row["callback_secret"] == callback_secret
    assert row["query_password"] == query_password and row["query_username"] == "qw-platform"
    assert json.loads(row["ip_allow"]) == ["203.0.113.0/24", "198.51.100.7/32"]
    assert (row["payment_currency"], row["payment_methods"]) == ("EUR", "wallet")
    assert (row["sandbox"], row["allow_http_callback"]) == (0, 0)
    (credential,) = sql(
        platform,
        "SELECT password_hash FROM partner_credentials c JOIN partners p ON p.id = c.partner_id"
        " WHERE p.name = $1",
        name,
    )
    assert verify_password(wallet_password.encode(), credential["password_hash"])
    # Never shown again, nor written to the audit log.
    listing = console.get("/admin/partners").text
    assert name in listing
    audit_text = console.get("/admin/audit").text + json.dumps(audit_rows(platform))
    for secret in (wallet_password, callback_secret, query_password):
        assert secret not in listing and secret not in audit_text

    rotated = console.post(f"/admin/partners/{name}/rotate", {"what": "callback"})
    (new_secret,) = __import__("re").findall(r"data-secret>([^<]+)<", rotated.text)
    assert new_secret != callback_secret
    assert (
        sql(platform, "SELECT callback_secret FROM partners WHERE name = $1", name)[0][
            "callback_secret"
        ]
        == new_secret
    )
    console.post(f"/admin/partners/{name}/rotate", {"what": "wallet"})
    assert "Revoke old credentials" in console.get("/admin/partners").text
    console.post(f"/admin/partners/{name}/revoke-old")
    active = sql(
        platform,
        "SELECT COUNT(*) AS n FROM partner_credentials c JOIN partners p ON p.id = c.partner_id"
        " WHERE p.name = $1 AND c.revoked_at_ms IS NULL",
        name,
    )
    assert int(active[0]["n"]) == 1
    updated = console.post(
        f"/admin/partners/{name}",
        {
            "client_url": "",
            "callback_url": "",
            "query_url": "http://127.0.0.1:9/q",
            "query_username": "u",
            "ip_allow": "",
            "payment_currency": "USD",
            "payment_methods": "wallet",
        },
    )
    assert updated.status_code == 303
    assert (
        sql(platform, "SELECT payment_currency FROM partners WHERE name = $1", name)[0][
            "payment_currency"
        ]
        == "USD"
    )
    assert (
        sql(platform, "SELECT query_url FROM partners WHERE name = $1", name)[0]["query_url"]
        == "http://127.0.0.1:9/q"
    )
    actions = [r["action"] for r in audit_rows(platform, target=name)]
    assert set(actions) == {
        "partner.create",
        "partner.rotate_callback_secret",
        "partner.rotate_wallet_password",
        "partner.revoke_old_credentials",
        "partner.update",
    }
    bad = console.post("/admin/partners", {"name": "Bad Name!"})
    assert bad.status_code == 303
    assert "Partner not created" in console.get("/admin/partners").text


def partner_row(platform: Platform, name: str) -> dict[str, Any] | None:
    rows = sql(platform, "SELECT * FROM partners WHERE name = $1", name)
    return dict(rows[0]) if rows else None


def test_partner_payment_settings(console: Console, platform: Platform) -> None:
    """Currency required and known; sandbox card only for sandbox partners; https callbacks
    unless plain http is allowed, and then a warning; every change audited."""
    base = {"client_url": "https://g.example/", "payment_currency": "EUR"}
    refusals = [
        ({"payment_currency": ""}, "a payment currency is required"),
        ({"payment_currency": "XYZ"}, "unknown payment currency"),
        ({"payment_methods": ["wallet", "sandbox_card"]}, "only a sandbox partner"),
        ({"payment_methods": "paypal"}, "unknown payment method"),
        ({"callback_url": "http://acme.example/pay"}, "must be https"),
    ]
    for change, why in refusals:
        name = f"bad-{secrets.token_hex(3)}"
        assert console.post("/admin/partners", {"name": name, **base, **change}).status_code == 303
        assert why in console.get("/admin/partners").text, why
        assert partner_row(platform, name) is None

    name = f"sbx-{secrets.token_hex(3)}"
    created = console.post(
        "/admin/partners",
        {
            "name": name,
            **base,
            "sandbox": "1",
            "payment_methods": ["wallet", "sandbox_card"],
            "callback_url": "http://10.0.0.5/pay",
            "allow_http_callback": "1",
        },
    )
    assert created.status_code == 200
    row = partner_row(platform, name)
    assert row is not None
    assert (row["sandbox"], row["payment_methods"], row["allow_http_callback"]) == (
        1,
        "wallet,sandbox_card",
        1,
    )
    listing = console.get("/admin/partners").text
    section = listing[listing.index(f'data-partner="{name}"') :]
    section = section[: section.index("</section>")]
    assert 'data-testid="http-callback-warning"' in section
    assert "http://10.0.0.5/pay" in section and 'data-testid="sandbox-badge"' in section

    # Turning sandbox off while the sandbox card is listed, or plain http off while the
    # callback URL is http, is refused and changes nothing.
    form = {
        "client_url": "https://g.example/",
        "query_username": "qwallet",
        "callback_url": "http://10.0.0.5/pay",
        "payment_currency": "EUR",
        "payment_methods": ["wallet", "sandbox_card"],
        "allow_http_callback": "1",
    }
    console.post(f"/admin/partners/{name}", {**form})  # sandbox unticked
    assert "only a sandbox partner" in console.get("/admin/partners").text
    console.post(f"/admin/partners/{name}", {**form, "sandbox": "1", "allow_http_callback": ""})
    assert "must be https" in console.get("/admin/partners").text
    assert partner_row(platform, name) == row

    console.post(
        f"/admin/partners/{name}",
        {
            "client_url": "https://g.example/",
            "query_username": "qwallet",
            "callback_url": "https://acme.example/pay",
            "payment_currency": "GBP",
            "payment_methods": "wallet",
        },
    )
    row = partner_row(platform, name)
    assert row is not None
    assert (row["sandbox"], row["payment_methods"], row["allow_http_callback"]) == (0, "wallet", 0)
    assert (row["payment_currency"], row["callback_url"]) == ("GBP", "https://acme.example/pay")
    section = console.get("/admin/partners").text
    section = section[section.index(f'data-partner="{name}"') :]
    assert "http-callback-warning" not in section[: section.index("</section>")]
    updates = [r for r in audit_rows(platform, target=name) if r["action"] == "partner.update"]
    assert len(updates) == 1
    assert json.loads(updates[0]["details"]) == {
        "allowHttpCallback": False,
        "callbackUrl": "https://acme.example/pay",
        "paymentCurrency": "GBP",
        "paymentMethods": "wallet",
        "sandbox": False,
    }


def test_transactions_filter_and_detail(
    console: Console, platform: Platform, new_wallet: Any
) -> None:
    wallet = new_wallet(balance="100.00")
    assert wallet.money("withdraw", "tf-1", "10.00")[0] == 200
    _status, body = wallet.money("withdraw", "tf-2", "3.00")
    assert wallet.money("confirmWithdrawal", "tf-2", "3.00")[0] == 200
    assert wallet.money("deposit", "tf-3", "1.00")[0] == 200
    qw_id = body["qwTransactionId"]

    def listed(**params: str) -> set[str]:
        page = console.get("/admin/transactions", params=params).text
        return {mm for mm in ("tf-1", "tf-2", "tf-3") if f">{mm}</a>" in page}

    assert listed(partner=wallet.username) == {"tf-1", "tf-2", "tf-3"}
    assert listed(player=wallet.player_id, state="pending") == {"tf-1", "tf-3"}
    assert listed(partner=wallet.username, kind="deposit") == {"tf-3"}
    assert listed(partner=wallet.username, state="confirmed") == {"tf-2"}
    import datetime as dt

    today = dt.datetime.fromtimestamp(platform.clock.now_ms() / 1000, tz=dt.UTC).date()
    assert listed(partner=wallet.username, date_from=str(today), date_to=str(today)) == {
        "tf-1",
        "tf-2",
        "tf-3",
    }
    tomorrow = today + dt.timedelta(days=1)
    assert listed(partner=wallet.username, date_from=str(tomorrow)) == set()
    assert "not a date" in console.get("/admin/transactions", params={"date_from": "bad"}).text

    detail = console.get(f"/admin/transactions/{qw_id}").text
    assert "tf-2" in detail and "confirm" in detail and "-3.00 XAG" in detail
    assert console.get("/admin/transactions/none").status_code == 404


def test_manual_resolution_of_a_pending_deposit(
    console: Console, platform: Platform, new_wallet: Any
) -> None:
    wallet = new_wallet(balance="1.00")
    _status, body = wallet.money("deposit", "dep-1", "4.00")
    qw_id = body["qwTransactionId"]
    missing_reason = console.post(f"/admin/transactions/{qw_id}/resolve", {"decision": "confirm"})
    assert missing_reason.status_code == 303
    assert platform.player(wallet.player_id)["available"] == "1.00"
    console.post(
        f"/admin/transactions/{qw_id}/resolve", {"decision": "confirm", "reason": "studio e-mail"}
    )
    assert platform.player(wallet.player_id)["available"] == "5.00"
    page = console.get(f"/admin/transactions/{qw_id}").text
    assert "studio e-mail" in page and console.username in page
    (entry,) = audit_rows(platform, action="transaction.resolve", target=qw_id)
    assert json.loads(entry["details"])["result"] == "confirmed"
    # The partner's own confirm still gets a replay.
    assert wallet.money("confirmDeposit", "dep-1", "4.00")[0] == 200
    assert platform.reconcile().ok


def test_payment_order_redeliver(console: Console, platform: Platform, new_wallet: Any) -> None:
    wallet = new_wallet()
    order_id = str(uuid.uuid4())
    now = platform.clock.now_ms()

    async def seed() -> None:
        async with platform.store.transaction() as tx:
            partner = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", wallet.username)
            assert partner is not None
            await tx.execute(
                "INSERT INTO payment_orders (id, partner_id, player_id, cp_order_id, server_id,"
                " product_id, product_number, product_price, amount_minor, currency, ext_params,"
                " state, delivery_attempts, created_at_ms, updated_at_ms, paid_at_ms)"
                " VALUES ($1, $2, $3, $4, '10001', 'wm.spin.1', 1, '4.99', 499, 'XAG', '', 'failed',"
                " 1, $5, $5, $5)",
                order_id,
                partner["id"],
                wallet.player_id,
                f"cp-{order_id[:8]}",
                now,
            )
            await tx.execute(
                "INSERT INTO payment_attempts (order_id, attempt, at_ms, http_status,"
                " response_excerpt, outcome) VALUES ($1, 1, $2, 502, 'bad gateway', 'failed')",
                order_id,
                now,
            )

    platform.run(seed())
    listing = console.get("/admin/orders", params={"state": "failed"}).text
    assert f"cp-{order_id[:8]}" in listing
    detail = console.get(f"/admin/orders/{order_id}").text
    assert "bad gateway" in detail and "Redeliver" in detail
    assert console.post(f"/admin/orders/{order_id}/redeliver").status_code == 303
    (row,) = sql(
        platform, "SELECT state, next_delivery_at_ms FROM payment_orders WHERE id = $1", order_id
    )
    assert row["state"] == "paid" and row["next_delivery_at_ms"] == platform.clock.now_ms()
    (entry,) = audit_rows(platform, action="order.redeliver", target=order_id)
    assert json.loads(entry["details"]) == {"previousState": "failed"}
    # A paid order is already queued: a second redeliver is refused.
    console.post(f"/admin/orders/{order_id}/redeliver")
    assert "only delivered or failed" in console.get(f"/admin/orders/{order_id}").text


def test_reconciliation_dashboard_holds_and_audit_pages(
    console: Console, platform: Platform, new_wallet: Any
) -> None:
    wallet = new_wallet()
    wallet.money("withdraw", "dash-1", "2.00")
    wallet.call("getBalance", {"token": "no-such-token"})  # an error for the chart's counters
    page = console.get("/admin/reconcile")
    assert page.status_code == 200 and "Run reconciliation" in page.text
    started = console.post("/admin/reconcile")
    assert started.status_code == 303  # a background job (tests/admin/test_reconcile_jobs.py)
    deadline = time.monotonic() + 30
    while "OK — no differences" not in (result := console.get("/admin/reconcile")).text:
        assert time.monotonic() < deadline, result.text
        time.sleep(0.1)
    assert audit_rows(platform, action="reconcile.run")[0]["operator"] == console.username
    dashboard = console.get("/admin/").text
    for text in ("Balances by currency", "Pending holds", "Payment orders", "Wallet API errors"):
        assert text in dashboard
    # dash-1 is still a hold: the capped count (a number, or "10000+") links to the backlog.
    holds_count = re.search(r'state=pending&amp;kind=withdrawal">(\d+\+?)</a>', dashboard)
    assert holds_count is not None and holds_count.group(1) != "0", dashboard
    assert "Past the hold window" in dashboard
    holds_page = console.get("/admin/holds")
    assert holds_page.status_code == 200 and "Deposits past the window" in holds_page.text
    ran = console.post("/admin/holds/run")
    assert ran.status_code == 303
    assert audit_rows(platform, action="resolver.run")
    audit_page = console.get("/admin/audit", params={"action": "reconcile.run"}).text
    assert "<code>reconcile.run</code>" in audit_page
    assert "<code>player.adjust</code>" not in audit_page
    assert console.get("/admin/static/admin.css").status_code == 200
