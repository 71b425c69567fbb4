"""The console in a real browser (Playwright driving Debian's Chromium), with screenshots.

Screenshots go to ``docs/screenshots/`` when ``QWALLET_UPDATE_SCREENSHOTS=1`` (the operator
guide shows them), else to ``test-artifacts/screenshots/``. The pages are the same on both
databases, so this module runs on SQLite only.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from qwallet.clock import ManualClock
from qwallet.service import operators, reconcile_jobs
from qwallet.settings import Settings
from tests.conftest import LiveServer, Platform

T = TypeVar("T")

CHROMIUM = Path(os.environ.get("QWALLET_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("QWALLET_UPDATE_SCREENSHOTS") == "1"
    else ROOT / "test-artifacts" / "screenshots"
)

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


class ThreadedPlatform(Platform):
    """Playwright's sync API keeps an event loop running on the main thread, so the database
    helpers run their coroutines on a thread of their own."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="platform")
        super().__init__(settings, clock)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._executor.submit(super().run, coroutine).result()

    def close(self) -> None:
        super().close()
        self._executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def platform(settings: Settings, clock: ManualClock) -> Iterator[Platform]:
    helper = ThreadedPlatform(settings, clock)
    yield helper
    helper.close()


@pytest.fixture(scope="module")
def browser(server: LiveServer) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_operator_journey(
    page: Any, server: LiveServer, platform: Platform, new_wallet: Any
) -> None:
    expect = sync_api.expect
    username = f"ops-{secrets.token_hex(2)}"
    issued = platform.run(
        operators.create_operator(platform.store, username, platform.clock.now_ms())
    )
    wallet = new_wallet(balance="250.00")
    assert wallet.money("withdraw", "shop-1001", "30.00")[0] == 200
    assert wallet.money("withdraw", "shop-1002", "12.00")[0] == 200
    assert wallet.money("confirmWithdrawal", "shop-1002", "12.00")[0] == 200
    nickname = platform.player(wallet.player_id)["nickname"]

    page.goto(f"{server.url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    shot(page, "01-sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(issued.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # A few Wallet API errors between dashboard visits give the chart something to draw.
    for errors in (3, 7, 2):
        for _ in range(errors):
            wallet.call("getBalance", {"token": "expired-or-unknown"})
        wallet.money("withdraw", f"too-much-{secrets.token_hex(3)}", "100000.00")
        platform.clock.advance(61_000)
        page.reload()
    expect(page.locator("svg.chart polyline").first).to_be_attached()
    # shop-1001 holds 30.00: counted (capped counts, migration 0013) and in the Held column.
    expect(page.get_by_role("row", name=re.compile(r"^Pending withdrawals"))).to_contain_text(
        re.compile(r"[1-9]")
    )
    expect(page.get_by_role("row", name=re.compile(r"^Past the hold window"))).to_be_visible()
    shot(page, "02-dashboard")

    page.get_by_role("link", name="Players", exact=True).click()
    page.get_by_label("Player id or start of nickname").fill(nickname)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=wallet.player_id).click()
    expect(page.get_by_test_id("available")).to_have_text("208.00 XAG")
    page.get_by_label(re.compile(r"^Amount")).fill("15.00")
    page.get_by_label(re.compile(r"^Reason \(recorded")).fill("goodwill credit, ticket 4711")
    shot(page, "03-player")
    page.get_by_role("button", name="Adjust balance").click()
    expect(page.get_by_role("status")).to_have_text("Adjusted by 15.00 XAG.")
    expect(page.get_by_test_id("available")).to_have_text("223.00 XAG")
    assert platform.player(wallet.player_id)["available"] == "223.00"

    page.get_by_role("link", name="Audit log").click()
    row = page.locator("tr", has_text="player.adjust").filter(has_text=wallet.player_id)
    expect(row.first).to_contain_text("goodwill credit, ticket 4711")
    expect(row.first).to_contain_text(username)
    shot(page, "04-audit-log")

    page.get_by_role("link", name="Transactions").click()
    page.get_by_label("Partner").select_option(wallet.username)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name="shop-1001")).to_be_visible()
    expect(page.get_by_role("link", name="shop-1002")).to_be_visible()
    shot(page, "05-transactions")
    page.get_by_role("link", name="shop-1001").click()
    expect(page.get_by_role("heading", name=re.compile("shop-1001"))).to_be_visible()
    expect(page.locator("table").first).to_contain_text("held")
    shot(page, "06-transaction")

    page.get_by_role("link", name="Partners").click()
    shot(page, "07-partners")
    page.get_by_role("link", name="Hold resolver").click()
    shot(page, "08-hold-resolver")
    page.get_by_role("link", name="Reconciliation").click()
    page.get_by_role("button", name="Run reconciliation").click()
    # A background job: the page follows it (refreshing while it runs) to its result.
    expect(page.get_by_test_id("reconcile-result")).to_have_text(
        "OK — no differences", timeout=15_000
    )
    expect(page.get_by_test_id("reconcile-state")).to_contain_text("finished")
    expect(page.get_by_role("button", name="Full run (all of history)")).to_be_enabled()
    shot(page, "09-reconciliation")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))


def test_new_partner_secrets_page(page: Any, server: LiveServer, platform: Platform) -> None:
    expect = sync_api.expect
    username = f"ops-{secrets.token_hex(2)}"
    issued = platform.run(
        operators.create_operator(platform.store, username, platform.clock.now_ms())
    )
    page.goto(f"{server.url}/admin/partners")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(issued.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Partners", exact=True)).to_be_visible()
    name = f"studio-{secrets.token_hex(2)}"
    page.get_by_role("heading", name="New partner").click()
    page.get_by_label(re.compile(r"^Name")).first.fill(name)
    page.get_by_label("Display name").first.fill("Studio Demo")
    page.get_by_label("Query Withdrawal URL").first.fill("https://studio.example/qw/query")
    page.get_by_label(re.compile(r"^Payment currency")).first.select_option("EUR")
    page.get_by_role("button", name="Create partner").click()
    expect(page.get_by_role("heading", name=f"Secrets for {name}")).to_be_visible()
    expect(page.locator("[data-secret]")).to_have_count(5)
    shot(page, "10-partner-secrets")
    page.get_by_role("link", name=re.compile("back to partners")).click()
    expect(page.locator("[data-secret]")).to_have_count(0)


def test_reconciliation_job_progress_refusal_and_result(
    page: Any, server: LiveServer, platform: Platform
) -> None:
    # Another server process holds the lease with a job at 4 of 9 batches: the page shows its
    # progress bar, disables the buttons, and follows it (reloading) until the job ends.
    expect = sync_api.expect
    username = f"ops-{secrets.token_hex(2)}"
    issued = platform.run(
        operators.create_operator(platform.store, username, platform.clock.now_ms())
    )
    job = platform.run(
        reconcile_jobs.start(
            platform.store, operator="elsewhere", mode="full", now_ms=platform.clock.now_ms()
        )
    )
    platform.run(reconcile_jobs._beat(platform.store, job.id, 4, 9, platform.clock.now_ms()))
    page.goto(f"{server.url}/admin/login?next=/admin/reconcile")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(issued.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("reconcile-state")).to_contain_text("running, 4 of 9 batches")
    expect(page.get_by_test_id("reconcile-progress")).to_be_visible()
    expect(page.get_by_test_id("reconcile-progress")).to_have_attribute("value", "4")
    expect(page.get_by_role("button", name="Full run (all of history)")).to_be_disabled()
    shot(page, "09b-reconciliation-running")
    # A start from a page loaded before the job (buttons still enabled) is refused, clearly.
    page.evaluate(
        "document.querySelectorAll('form[action=\"/admin/reconcile\"] button')"
        ".forEach(b => b.disabled = false)"
    )
    page.get_by_role("button", name="Run reconciliation").click()
    expect(page.get_by_test_id("reconcile-refused")).to_contain_text(
        f"A reconciliation is already running (job {job.id}"
    )
    # The job finishes elsewhere: the page, reloading by itself, shows the result.
    page.goto(f"{server.url}/admin/reconcile")
    platform.run(reconcile_jobs.run(platform.store, job, platform.clock.now_ms))
    expect(page.get_by_test_id("reconcile-result")).to_have_text(
        "OK — no differences", timeout=15_000
    )
    expect(page.get_by_test_id("reconcile-progress")).to_have_count(0)
    expect(page.get_by_role("button", name="Full run (all of history)")).to_be_enabled()
