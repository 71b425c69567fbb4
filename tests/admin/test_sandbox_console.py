"""The console's sandbox page over HTTP, on both databases: rules added and removed from the
page, production partners refused, every form needs the CSRF token, faults shown next to the
calls they hit (on the sandbox page and on the transaction page)."""

from __future__ import annotations

from typing import Any

import httpx

from qwallet.store.sql import fetch_all, fetch_one
from tests.admin.conftest import Console
from tests.conftest import LiveServer, Platform
from tests.integration.test_sandbox_faults import sandbox_wallet


def rule_rows(platform: Platform, partner: str) -> list[Any]:
    return platform.run(
        fetch_all(
            platform.store,
            "SELECT r.id, r.removed_at_ms FROM sandbox_fault_rules r JOIN partners p"
            " ON p.id = r.partner_id WHERE p.name = $1",
            partner,
        )
    )


def test_rules_from_the_console_hit_calls_shown_on_both_pages(
    console: Console, server: LiveServer, platform: Platform
) -> None:
    name, wallet = sandbox_wallet(server, platform)
    path = f"/admin/partners/{name}/sandbox"
    added = console.post(
        f"{path}/rules",
        {"endpoint": "withdraw", "mode": "next", "count": "1", "action": "error",
         "error_code": "100", "after_commit": "1", "delay_ms": "1000"},
    )  # fmt: skip
    assert added.status_code == 303
    [rule] = rule_rows(platform, name)
    assert wallet.money("withdraw", "console-1", "1.00")[0] == 500
    page = console.get(path).text
    assert "error 100 after the commit on the next call of withdraw" in page
    assert 'data-testid="faulted-call"' in page and "console-1" in page
    assert 'data-testid="report-verdict">fail' in page  # committed, answered 500, no rollback
    tx = platform.run(
        fetch_one(platform.store, "SELECT qw_transaction_id FROM transactions WHERE"
                  " mm_transaction_id = 'console-1'")
    )  # fmt: skip
    assert tx is not None
    detail = console.get(f"/admin/transactions/{tx['qw_transaction_id']}").text
    assert 'data-testid="transaction-sandbox-calls"' in detail and "rule " in detail
    assert wallet.money("rollbackWithdrawal", "console-1")[0] == 200
    assert 'data-testid="report-verdict">pass' in console.get(path).text
    report = console.get(f"{path}/report.json").json()
    assert report["partner"] == name and report["verdict"] == "pass"
    removed = console.post(f"{path}/rules/{rule['id']}/remove")
    assert removed.status_code == 303
    assert rule_rows(platform, name)[0]["removed_at_ms"] is not None
    wallet.close()


def test_production_partners_get_no_form_and_no_rule(
    console: Console, server: LiveServer, platform: Platform
) -> None:
    name, wallet = sandbox_wallet(server, platform, sandbox=False)
    path = f"/admin/partners/{name}/sandbox"
    page = console.get(path).text
    assert 'data-testid="production-notice"' in page and 'data-testid="add-rule"' not in page
    refused = console.post(
        f"{path}/rules",
        {"endpoint": "withdraw", "mode": "next", "count": "1", "action": "drop"},
        follow_redirects=True,
    )
    assert "production partner" in refused.text
    assert rule_rows(platform, name) == []
    wallet.close()


def test_sandbox_forms_need_a_signed_in_operator_and_the_csrf_token(
    console: Console, server: LiveServer, platform: Platform
) -> None:
    name, wallet = sandbox_wallet(server, platform)
    path = f"/admin/partners/{name}/sandbox"
    form = {"endpoint": "withdraw", "mode": "next", "count": "1", "action": "drop"}
    assert console.client.post(f"{path}/rules", data=form).status_code == 403  # no CSRF token
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(path).status_code == 303  # to the sign-in page
        assert anonymous.get(f"{path}/report.json").status_code == 303
        assert anonymous.post(f"{path}/rules", data=form).status_code == 403
    assert rule_rows(platform, name) == []
    bad = console.post(
        f"{path}/rules", {"endpoint": "withdraw", "mode": "next", "count": "x", "action": "drop"},
        follow_redirects=True,
    )  # fmt: skip
    assert "not a whole number" in bad.text and rule_rows(platform, name) == []
    assert console.get("/admin/partners/no-such-partner/sandbox").status_code == 400
    wallet.close()
