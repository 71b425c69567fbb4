"""The console's sandbox page in a real browser (Playwright driving Debian's Chromium): an
operator sets a fault rule from the page, the studio's call meets it, the page shows the fault
next to the call and the report's verdict turns from fail to pass once the studio rolls back.
SQLite only (the pages are the same on both databases; tests/admin/test_sandbox_console.py
runs on both)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from qwallet.service import operators
from tests.admin.test_browser import (  # noqa: F401 (fixtures)
    backend,
    browser,
    page,
    platform,
    shot,
    sync_api,
)
from tests.conftest import LiveServer, Platform
from tests.integration.test_sandbox_faults import sandbox_wallet


def test_operator_sets_a_fault_and_reads_the_report(
    page: Any,  # noqa: F811
    server: LiveServer,
    platform: Platform,  # noqa: F811
) -> None:
    expect = sync_api.expect
    username = f"ops-{secrets.token_hex(2)}"
    issued = platform.run(
        operators.create_operator(platform.store, username, platform.clock.now_ms())
    )
    name, wallet = sandbox_wallet(server, platform)
    production, _ = sandbox_wallet(server, platform, sandbox=False)

    page.goto(f"{server.url}/admin/partners")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(issued.password)
    page.get_by_role("button", name="Sign in").click()
    card = page.locator(f'section[data-partner="{name}"]')
    card.get_by_test_id("sandbox-link").click()
    expect(page.get_by_role("heading", name=re.compile("Sandbox"))).to_be_visible()

    form = page.get_by_test_id("add-rule")
    form.get_by_label("Endpoint").select_option("withdraw")
    form.get_by_label("Calls").select_option("next")
    form.get_by_label("N or K").fill("1")
    form.get_by_label("Fault").select_option("error")
    form.locator('select[name="error_code"]').select_option("121")
    form.get_by_role("button", name="Add rule").click()
    rules = page.get_by_test_id("rules")
    expect(rules).to_contain_text("error 121 on the next call of withdraw")

    assert wallet.money("withdraw", "browser-1", "5.00")[1]["errorCode"] == 121
    page.reload()
    faulted = page.get_by_test_id("faulted-call")
    expect(faulted).to_contain_text("browser-1")
    expect(faulted).to_contain_text("error 121")
    expect(page.get_by_test_id("report-verdict")).to_have_text("fail")
    expect(page.get_by_test_id("reactions")).to_contain_text("no rollback")
    shot(page, "sandbox-01-fault-hit")

    assert wallet.money("rollbackWithdrawal", "browser-1")[0] == 200
    page.reload()
    expect(page.get_by_test_id("report-verdict")).to_have_text("pass")
    expect(page.get_by_test_id("reactions")).to_contain_text("rollbackWithdrawal sent")
    expect(rules).to_contain_text("1")
    shot(page, "sandbox-02-report-pass")

    page.get_by_role("button", name="Remove").click()
    expect(rules).to_contain_text("removed")

    page.goto(f"{server.url}/admin/partners/{production}/sandbox")
    expect(page.get_by_test_id("production-notice")).to_be_visible()
    expect(page.get_by_test_id("add-rule")).to_have_count(0)
    wallet.close()
