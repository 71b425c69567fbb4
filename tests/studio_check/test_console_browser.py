"""The console's integration-check button in a real browser (Playwright on Debian's Chromium):
a sandbox studio passes, the same studio with a break shows its missed row, a production partner
is offered the read-only rows only. The page is the same on both databases: SQLite only."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qwallet.service import operators
from tests.admin.test_browser import (  # the console's browser fixtures
    ThreadedPlatform,
    backend,
    browser,
    page,
    platform,
    shot,
    sync_api,
)
from tests.conftest import LiveServer, Platform
from tests.demo.conftest import serve

from .broken_studio import Studio
from .conftest import CALLBACK_SECRET, QUERY_AUTH, create_sandbox_partner, stage

__all__ = ["ThreadedPlatform", "backend", "browser", "page", "platform"]


@pytest.fixture
def operator_page(page: Any, server: LiveServer, platform: Platform) -> Iterator[Any]:
    username = f"ops-{secrets.token_hex(2)}"
    issued = platform.run(
        operators.create_operator(platform.store, username, platform.clock.now_ms())
    )
    page.goto(f"{server.url}/admin/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(issued.password)
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    yield page


def test_check_button(operator_page: Any, server: LiveServer, platform: Platform) -> None:
    expect, page = sync_api.expect, operator_page
    partner = create_sandbox_partner(platform)
    production = create_sandbox_partner(platform, sandbox=False)
    studio = Studio(CALLBACK_SECRET, QUERY_AUTH)
    with serve(studio.app()) as url:
        stage(server, platform, partner, studio, url)
        page.goto(f"{server.url}/admin/partners")
        card = page.locator(f'section[data-partner="{partner.name}"]')
        card.get_by_role("button", name="Check integration").click()
        expect(page.get_by_role("heading", name="Integration check of")).to_be_visible()
        expect(page.get_by_test_id("studio-check-verdict")).to_contain_text(
            "passed — 12 passed, 0 missed, 0 skipped"
        )
        expect(page.locator("table.studio-check tbody tr.pass")).to_have_count(12)
        shot(page, "studio-check-passed")

        studio.breaks = {"skip_sign"}
        page.goto(f"{server.url}/admin/partners")
        card.get_by_role("button", name="Check integration").click()
        expect(page.get_by_test_id("studio-check-verdict")).to_contain_text("FAILED")
        missed = page.locator('tr[data-row="callback.bad_sign"]')
        expect(missed).to_have_class("miss")
        expect(missed).to_contain_text("refused: 4xx")
        expect(missed).to_contain_text("200 success")  # what the broken studio answered
        shot(page, "11-studio-check")
        studio.breaks = set()

    # A production partner: the button sends only the read-only Query rows.
    page.goto(f"{server.url}/admin/partners")
    production_card = page.locator(f'section[data-partner="{production.name}"]')
    expect(production_card.get_by_role("button", name="Check integration")).to_have_count(0)
    production_card.get_by_role("button", name="Check Query Withdrawal (read-only)").click()
    expect(page.get_by_role("heading", name="Integration check of")).to_be_visible()
    expect(page.locator("table.studio-check tbody tr")).to_have_count(5)
    expect(page.locator('tr[data-row="callback.valid"]')).to_have_count(0)

    # The audit log names the operator's runs.
    page.goto(f"{server.url}/admin/audit")
    expect(page.get_by_text("partner.check").first).to_be_visible()


def test_the_check_needs_a_signed_in_operator(server: LiveServer, platform: Platform) -> None:
    partner = create_sandbox_partner(platform)
    response = httpx.post(f"{server.url}/admin/partners/{partner.name}/check", timeout=10)
    assert response.status_code == 403
