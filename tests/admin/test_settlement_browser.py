"""The settlement page in a real browser (Playwright driving Debian's Chromium), SQLite only
(the page is the same on both databases; tests/admin/test_settlement.py runs both)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
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


def test_settlement_page(
    page: Any,  # noqa: F811 (the imported fixture)
    server: LiveServer,
    platform: Platform,  # noqa: F811 (the imported fixture)
    new_wallet: Any,
) -> None:
    expect = sync_api.expect
    username = f"ops-{secrets.token_hex(2)}"
    issued = platform.run(
        operators.create_operator(platform.store, username, platform.clock.now_ms())
    )
    wallet = new_wallet(balance="80.00")
    assert wallet.money("withdraw", "buy-1", "20.00")[0] == 200
    assert wallet.money("confirmWithdrawal", "buy-1", "20.00")[0] == 200
    assert wallet.money("deposit", "bonus-1", "4.50")[0] == 200
    assert wallet.money("confirmDeposit", "bonus-1", "4.50")[0] == 200
    assert wallet.money("withdraw", "buy-2", "6.00")[0] == 200
    assert wallet.money("rollbackWithdrawal", "buy-2")[0] == 200

    page.goto(f"{server.url}/admin/settlement")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(issued.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settlement")).to_be_visible()
    page.get_by_label("Partner").select_option(wallet.username)
    page.get_by_role("button", name="Show").click()
    table = page.get_by_test_id("settlement")
    row = table.locator("tbody tr", has_text=wallet.username)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("20.00 XAG")
    expect(row).to_contain_text("4.50 XAG")
    expect(row).to_contain_text("6.00 XAG")
    expect(row.get_by_test_id("net")).to_have_text("15.50 XAG")
    expect(page.get_by_role("link", name="Settlement")).to_have_attribute("aria-current", "page")
    shot(page, "settlement-daily")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert re.fullmatch(rf"settlement-{wallet.username}-[0-9-]+\.csv", download.suggested_filename)
    text = Path(download.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("partner,date,currency,withdrawals_confirmed_count")
    assert f"{wallet.username}," in text and ",15.50" in text

    page.get_by_label("From (UTC)").fill("2026-03-01")
    page.get_by_label("To (UTC)").fill("2026-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_have_text("To must not be before From.")
