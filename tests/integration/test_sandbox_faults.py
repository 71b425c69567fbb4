"""Faults on demand for sandbox partners, over a real server on loopback, on both databases.

Each action of a rule (error before or after the commit, delay, dropped connection, expired
session), the next-N and every-Kth counters (exact under concurrent calls), the record of every
fault next to the call it hit, and the refusals that keep production partners out of it.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from qwallet.service import api_keys, audit, partners, sandbox_faults
from qwallet.service.partners import OperatorError
from qwallet.store.sql import fetch_all, fetch_one
from tests.conftest import LiveServer, Platform, Wallet


def sandbox_wallet(
    server: LiveServer, platform: Platform, *, sandbox: bool = True, balance: str = "100.00"
) -> tuple[str, Wallet]:
    name = f"sbx-{secrets.token_hex(4)}"
    created = platform.run(
        partners.create_partner(
            platform.store,
            name,
            platform.clock.now_ms(),
            sandbox=sandbox,
            payment_currency=platform.xag,
        )
    )
    player_id = platform.create_player(balance)
    token = platform.create_session(player_id, name)
    credential = created.credential
    return name, Wallet(server, credential.username, credential.password, player_id, token)


def add_rule(platform: Platform, partner: str, **spec: Any) -> int:
    return platform.run(
        sandbox_faults.add_rule(
            platform.store,
            partner,
            sandbox_faults.RuleSpec(**spec),
            operator=audit.SYSTEM,
            now_ms=platform.clock.now_ms(),
        )
    )


def logged_calls(platform: Platform, partner: str) -> list[Any]:
    partner_id, _ = platform.run(sandbox_faults.partner_id_of(platform.store, partner))
    return platform.run(sandbox_faults.calls(platform.store, partner_id, 0, 2**62))


def rule(platform: Platform, partner: str, rule_id: int) -> Any:
    rows = platform.run(sandbox_faults.list_rules(platform.store, partner, include_removed=True))
    return next(row for row in rows if int(row["id"]) == rule_id)


def test_rules_are_refused_for_a_production_partner(server: LiveServer, platform: Platform) -> None:
    name, wallet = sandbox_wallet(server, platform, sandbox=False)
    with pytest.raises(OperatorError, match="production partner"):
        add_rule(platform, name, endpoint="withdraw", action="error", next_calls=1, error_code=100)
    count = platform.run(
        fetch_one(
            platform.store,
            "SELECT COUNT(*) AS n FROM sandbox_fault_rules"
            " WHERE partner_id = (SELECT id FROM partners WHERE name = $1)",
            name,
        )
    )
    assert count is not None and int(count["n"]) == 0
    # Its calls are answered as always and never logged.
    assert wallet.money("withdraw", "prod-1", "1.00")[0] == 200
    assert logged_calls(platform, name) == []
    wallet.close()


def test_a_rule_stops_when_its_partner_becomes_production(
    server: LiveServer, platform: Platform
) -> None:
    name, wallet = sandbox_wallet(server, platform)
    add_rule(platform, name, endpoint="getBalance", action="error", every_kth=1, error_code=100)
    assert wallet.call("getBalance", {"token": wallet.token})[0] == 500
    platform.run(
        partners.update_partner(
            platform.store,
            name,
            partners.PartnerUpdate(sandbox=False),
            now_ms=platform.clock.now_ms(),
        )
    )
    # The credential cache may still route the call through the sandbox path, but the rule is
    # re-checked against the partner's row: no fault any more.
    logged = len(logged_calls(platform, name))
    status, body = wallet.call("getBalance", {"token": wallet.token})
    assert status == 200 and "balance" in body, body
    assert len(logged_calls(platform, name)) == logged  # and no longer logged
    wallet.close()


def test_bad_rules_are_refused_with_a_reason(platform: Platform, server: LiveServer) -> None:
    name, wallet = sandbox_wallet(server, platform)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"endpoint": "nope", "action": "drop", "next_calls": 1}, "unknown endpoint"),
        ({"endpoint": "*", "action": "explode", "next_calls": 1}, "unknown action"),
        ({"endpoint": "*", "action": "drop"}, "exactly one"),
        ({"endpoint": "*", "action": "drop", "next_calls": 1, "every_kth": 2}, "exactly one"),
        ({"endpoint": "*", "action": "error", "next_calls": 1, "error_code": 103}, "error code"),
        ({"endpoint": "*", "action": "error", "next_calls": 1}, "error code"),
        ({"endpoint": "*", "action": "delay", "next_calls": 1, "delay_ms": 0}, "delay between"),
        ({"endpoint": "*", "action": "drop", "next_calls": 0}, "between 1 and"),
    ]
    for spec, message in bad:
        with pytest.raises(OperatorError, match=message):
            add_rule(platform, name, **spec)
    assert platform.run(sandbox_faults.list_rules(platform.store, name)) == []
    wallet.close()


def test_next_n_calls_get_the_error_then_the_calls_work(
    server: LiveServer, platform: Platform
) -> None:
    name, wallet = sandbox_wallet(server, platform)
    rule_id = add_rule(
        platform, name, endpoint="withdraw", action="error", next_calls=2, error_code=121
    )
    answers = [wallet.money("withdraw", f"w-{n}", "1.00") for n in range(3)]
    assert [body.get("errorCode") for _, body in answers] == [121, 121, None]
    assert "sandbox fault rule" in answers[0][1]["errorDescription"]
    assert wallet.balance() == "99.0"  # the injected answers moved no money
    row = rule(platform, name, rule_id)
    assert (row["remaining"], row["seen"], row["fired"]) == (0, 2, 2)
    calls = logged_calls(platform, name)
    assert [
        (c["mm_transaction_id"], c["error_code"], c["rule_id"])
        for c in calls
        if c["mm_transaction_id"]
    ] == [
        ("w-0", 121, rule_id),
        ("w-1", 121, rule_id),
        ("w-2", 0, None),
    ]
    wallet.close()


def test_every_kth_call_answers_500_100(server: LiveServer, platform: Platform) -> None:
    name, wallet = sandbox_wallet(server, platform)
    add_rule(platform, name, endpoint="getBalance", action="error", every_kth=3, error_code=100)
    statuses = [wallet.call("getBalance", {"token": wallet.token})[0] for _ in range(7)]
    assert statuses == [200, 200, 500, 200, 200, 500, 200]
    wallet.close()


def test_error_after_the_commit_and_drop_commit_the_call(
    server: LiveServer, platform: Platform
) -> None:
    name, wallet = sandbox_wallet(server, platform)
    add_rule(
        platform,
        name,
        endpoint="withdraw",
        action="error",
        next_calls=1,
        error_code=100,
        after_commit=True,
    )
    status, body = wallet.money("withdraw", "after-1", "2.00")
    assert (status, body["errorCode"]) == (500, 100)
    assert wallet.balance() == "98.0"  # it committed: the funds are held
    add_rule(platform, name, endpoint="withdraw", action="drop", next_calls=1)
    with pytest.raises(httpx.TransportError):
        wallet.money("withdraw", "drop-1", "3.00")
    assert wallet.balance() == "95.0"
    row = platform.run(
        fetch_one(
            platform.store, "SELECT state FROM transactions WHERE mm_transaction_id = 'drop-1'"
        )
    )
    assert row is not None and row["state"] == "pending"
    # The studio's rollback then works as for any failed withdraw.
    status, body = wallet.money("rollbackWithdrawal", "drop-1")
    assert status == 200 and body["balance"]["amount"] == 98.0, body
    calls = logged_calls(platform, name)
    dropped = next(c for c in calls if c["mm_transaction_id"] == "drop-1")
    assert dropped["http_status"] is None and dropped["fault_action"] == "drop"
    wallet.close()


def test_delay_and_expire_session(server: LiveServer, platform: Platform) -> None:
    name, wallet = sandbox_wallet(server, platform)
    add_rule(platform, name, endpoint="getBalance", action="delay", next_calls=1, delay_ms=400)
    started = time.monotonic()
    assert wallet.call("getBalance", {"token": wallet.token})[0] == 200
    assert time.monotonic() - started >= 0.4
    assert wallet.money("withdraw", "exp-1", "1.00")[0] == 200
    add_rule(platform, name, endpoint="verifySession", action="expire_session", next_calls=1)
    assert wallet.call("verifySession", {"token": wallet.token})[1]["errorCode"] == 111
    assert wallet.call("getBalance", {"token": wallet.token})[1]["errorCode"] == 111
    # Confirm is accepted with an expired session (spec §1.4).
    status, body = wallet.money("confirmWithdrawal", "exp-1", "1.00")
    assert status == 200 and "qwTransactionId" in body, body
    wallet.close()


def test_next_n_is_exact_under_concurrent_calls(server: LiveServer, platform: Platform) -> None:
    name, wallet = sandbox_wallet(server, platform)
    rule_id = add_rule(
        platform, name, endpoint="getBalance", action="error", next_calls=10, error_code=134
    )

    def call(_: int) -> int:
        client = httpx.Client(base_url=server.url, auth=(wallet.username, wallet.password))
        try:
            body = client.post("/wallet/getBalance", json={"token": wallet.token}).json()
            return int(body.get("errorCode", 0))
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(call, range(40)))
    assert codes.count(134) == 10 and codes.count(0) == 30
    row = rule(platform, name, rule_id)
    assert (row["remaining"], row["seen"], row["fired"]) == (0, 10, 10)
    faults = platform.run(
        fetch_all(platform.store, "SELECT id FROM sandbox_faults WHERE rule_id = $1", rule_id)
    )
    assert len(faults) == 10
    wallet.close()


def test_operator_api_manages_rules_and_refuses_production(
    server: LiveServer, platform: Platform
) -> None:
    key = platform.run(
        api_keys.create_api_key(platform.store, "faults-ci", platform.clock.now_ms())
    )
    bearer = {"Authorization": f"Bearer {key}"}
    name, wallet = sandbox_wallet(server, platform)
    production, other = sandbox_wallet(server, platform, sandbox=False)
    rule_body = {"endpoint": "withdraw", "action": "error", "errorCode": 121, "next": 1}
    with httpx.Client(base_url=server.url) as client:
        assert client.post(f"/api/partners/{name}/faults", json=rule_body).status_code == 401
        created = client.post(f"/api/partners/{name}/faults", json=rule_body, headers=bearer)
        assert created.status_code == 201, created.text
        assert created.json()["description"] == "error 121 on the next call of withdraw"
        refused = client.post(f"/api/partners/{production}/faults", json=rule_body, headers=bearer)
        assert refused.status_code == 400 and refused.json()["errorCode"] == 101
        assert "production partner" in refused.json()["errorDescription"]
        for bad in (
            {**rule_body, "next": 0},
            {**rule_body, "unknown": 1},
            {"endpoint": "withdraw", "action": "error", "next": 1},
            {"endpoint": "withdraw", "action": "delay", "delayMs": 999999, "next": 1},
        ):
            answer = client.post(f"/api/partners/{name}/faults", json=bad, headers=bearer)
            assert answer.status_code == 400, (bad, answer.text)
        listed = client.get(f"/api/partners/{name}/faults", headers=bearer).json()["rules"]
        assert [r["id"] for r in listed] == [created.json()["id"]]
        assert wallet.money("withdraw", "api-1", "1.00")[1]["errorCode"] == 121
        removed = client.delete(f"/api/partners/{name}/faults/{listed[0]['id']}", headers=bearer)
        assert removed.status_code == 204
        assert client.get(f"/api/partners/{name}/faults", headers=bearer).json()["rules"] == []
        again = client.delete(f"/api/partners/{name}/faults/{listed[0]['id']}", headers=bearer)
        assert again.status_code == 400
        for bad_id in ("-35", "0", "x", "1e3", "99999999999999999999"):
            refused = client.delete(f"/api/partners/{name}/faults/{bad_id}", headers=bearer)
            assert refused.status_code == 400, (bad_id, refused.text)
            assert refused.json()["errorCode"] == 101, refused.text
    assert platform.run(sandbox_faults.list_rules(platform.store, production)) == []
    actions = platform.run(
        fetch_all(
            platform.store,
            "SELECT action, operator FROM audit_log WHERE target = $1 ORDER BY id",
            name,
        )
    )
    assert [(a["action"], a["operator"]) for a in actions][-2:] == [
        ("partner.fault_rule_added", "api-key:faults-ci"),
        ("partner.fault_rule_removed", "api-key:faults-ci"),
    ]
    wallet.close()
    other.close()


def test_drop_hides_an_error_answer_too(server: LiveServer, platform: Platform) -> None:
    name, wallet = sandbox_wallet(server, platform, balance="1.00")
    add_rule(platform, name, endpoint="withdraw", action="drop", next_calls=1)
    with pytest.raises(httpx.TransportError):
        wallet.money("withdraw", "too-much", "5.00")  # would be 121
    assert wallet.balance() == "1.0"
    [call] = [c for c in logged_calls(platform, name) if c["mm_transaction_id"] == "too-much"]
    assert call["http_status"] is None and call["fault_action"] == "drop"
    wallet.close()
