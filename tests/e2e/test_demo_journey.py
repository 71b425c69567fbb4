"""The newcomer's journey, end to end: ``qwallet demo`` as a real process tree, Chromium driven by
Playwright through the lobby, the demo game in its iframe, the payment dialog and the admin
console.

Nothing is faked: the platform (``qwallet serve --demo``) and the demo game backend
(``qwallet demo-partner``) are the processes ``qwallet demo`` starts, on free loopback ports, in a
temporary working directory. The player buys an item with XAG, claims a bonus and buys a
real-money pack with the sandbox card (asynchronous confirmation, then the signed callback to the
game); the operator finds all of it in the console, redelivers the callback (the game grants the
pack once), adjusts the balance with a reason and reconciles.

Screenshots of every step go to ``test-artifacts/e2e/``; with ``QWALLET_UPDATE_SCREENSHOTS=1``
also to ``docs/screenshots/e2e-<step>.png`` (shown in the operator guide and the demo-game page).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import pytest

from qwallet.demo.launch import qwallet_command

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')"
)
CHROMIUM = Path(os.environ.get("QWALLET_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

expect = sync_api.expect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
DOC_SHOTS = ROOT / "docs" / "screenshots"
UPDATE_DOCS = os.environ.get("QWALLET_UPDATE_SCREENSHOTS") == "1"

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
WAIT_MS = 15_000  # any single UI expectation
DELIVERY_MS = 30_000  # sandbox confirmation (2 s) + worker tick + callback + the game's poll

TIMES = "\u00d7"  # the game writes quantities with the multiplication sign ("x600" in ASCII)
PAID = re.compile(r"^(paid|delivered)$")
ADJUST_REASON = "goodwill credit, ticket E2E-1"


# -- the demo process tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    process: subprocess.Popen[str]
    info: dict[str, str]
    log: Path

    @property
    def lobby(self) -> str:
        return self.info["lobby"].rstrip("/")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def newcomer_environment() -> dict[str, str]:
    """The caller's environment without any QWALLET_* setting: the defaults a newcomer gets."""
    return {name: value for name, value in os.environ.items() if not name.startswith("QWALLET_")}


def first_line(stream: TextIO, timeout_s: float) -> str:
    """The first line of ``stream``, or "" if none arrives in time (the reader thread is a daemon
    and ends when the process does)."""
    lines: queue.Queue[str] = queue.Queue(maxsize=1)
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        return ""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a foreign process took the id: not ours
        return False
    return True


def stop_demo(process: subprocess.Popen[str]) -> bool:
    """SIGTERM to ``qwallet demo`` (it stops its children), then SIGKILL to its process group
    (it was started as the leader of a group of its own). True if SIGTERM alone ended the tree."""
    pgid = process.pid
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    deadline = time.monotonic() + 5.0
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    graceful = process.poll() is not None and not group_alive(pgid)
    if not graceful:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()
    return graceful


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "qwallet-demo.log"
    arguments = ["demo", "--port", str(free_port()), "--partner-port", str(free_port()), "--json"]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*qwallet_command(), *arguments],
            cwd=tmp_path,
            env=newcomer_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group: the teardown can reach every child
        )
    try:
        assert process.stdout is not None
        line = first_line(process.stdout, STARTUP_TIMEOUT_S)
        if not line:
            pytest.fail(f"qwallet demo printed nothing (exit {process.poll()}); see {log}")
        info = json.loads(line)
        for key in ("lobby", "playerUsername", "playerPassword", "adminUsername", "adminPassword"):
            assert info.get(key), f"qwallet demo --json lacks {key}: {info}"
        yield Demo(process, info, log)
    finally:
        stop_demo(process)


@pytest.fixture
def browser() -> Iterator[Any]:
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
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Any, errors: list[str]) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())  # the console's confirm() prompts
    return page


def shot(page: Any, step: str) -> None:
    path = ARTIFACTS / f"{step}.png"
    page.screenshot(path=str(path), full_page=True)
    if UPDATE_DOCS:
        shutil.copyfile(path, DOC_SHOTS / f"e2e-{step}.png")


def amount(text: str) -> Decimal:
    return Decimal(text.split()[0].replace(",", ""))


def eventually(page: Any, check: Callable[[], bool], what: str, timeout_ms: int) -> None:
    """Reload ``page`` until ``check()`` holds, for pages that do not update themselves."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(500)
        page.reload()


# -- the journey -------------------------------------------------------------------------------


def test_newcomer_journey(demo: Demo, browser: Any) -> None:
    errors: list[str] = []
    lobby = demo.lobby

    # 1. The player signs in, sees the lobby, opens the demo game.
    page = new_page(browser, errors)
    page.goto(f"{lobby}/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill(demo.info["playerUsername"])
    page.get_by_label("Password").fill(demo.info["playerPassword"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{lobby}/")
    nickname = page.get_by_test_id("nickname").inner_text().strip()
    assert nickname
    start = amount(page.get_by_test_id("balance").inner_text())
    assert page.get_by_test_id("balance").inner_text().endswith(" XAG")
    expect(page.get_by_test_id("play-demo")).to_be_visible()
    shot(page, "01-lobby")

    page.get_by_test_id("play-demo").click()
    expect(page).to_have_url(f"{lobby}/play/demo")
    game = page.frame_locator("#game")
    expect(game.locator("#nickname")).to_have_text(f"Hi, {nickname}")
    expect(game.locator("#balance")).to_have_text(f"{start:.2f}")
    expect(game.locator("#currency")).to_have_text("XAG")
    expect(game.locator("#inventory-empty")).to_be_visible()
    shot(page, "02-game")

    # 2. An item for XAG: the game's balance drops at once, the platform's on its next poll.
    sword_price = Decimal("5.00")
    expect(game.get_by_test_id("buy-sword")).to_contain_text(f"{sword_price} XAG")
    game.get_by_test_id("buy-sword").click()
    after_sword = start - sword_price
    expect(game.locator("#balance")).to_have_text(f"{after_sword:.2f}")
    expect(game.locator("#inventory li[data-item=sword]")).to_contain_text(f"{TIMES}1")
    expect(page.locator("#balance-amount")).to_have_text(f"{after_sword:.2f}")
    shot(page, "03-item-bought")

    # 3. The bonus: the balance rises by the advertised amount.
    bonus_text = game.locator("#bonus-amount").inner_text()  # "+10.00 XAG"
    bonus = amount(bonus_text.lstrip("+"))
    assert bonus > 0
    game.get_by_test_id("claim-bonus").click()
    after_bonus = after_sword + bonus
    expect(game.locator("#balance")).to_have_text(f"{after_bonus:.2f}")
    expect(page.locator("#balance-amount")).to_have_text(f"{after_bonus:.2f}")
    shot(page, "04-bonus")

    # 4. A real-money pack: the game posts the purchase message, the platform's dialog opens,
    # the sandbox card approves asynchronously, the signed callback grants the pack.
    game.get_by_test_id("pack-gems.large").click()
    dialog = page.locator("#pay-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#pay-product")).to_have_text("Gem sack")
    expect(page.locator("#pay-quantity")).to_have_text("1")
    expect(page.locator("#pay-total")).to_have_text("4.99 XAG")
    expect(page.get_by_test_id("pay-sandbox_card-approve")).to_be_visible()
    shot(page, "05-payment-dialog")
    page.get_by_test_id("pay-sandbox_card-approve").click()
    expect(dialog).to_have_attribute("data-state", PAID, timeout=DELIVERY_MS)
    gems = game.locator("#inventory li[data-item=gems]")
    expect(gems).to_contain_text(f"{TIMES}600", timeout=DELIVERY_MS)
    expect(game.locator("#toast")).to_have_text(f"Delivered: 600 {TIMES} Gems")
    expect(page.locator("#pay-status")).to_contain_text("Paid")
    shot(page, "06-pack-delivered")
    page.locator("#pay-close").click()
    expect(dialog).to_be_hidden()
    # Paid by card: the wallet is untouched.
    expect(page.locator("#balance-amount")).to_have_text(f"{after_bonus:.2f}")

    # 5. The operator's view.
    admin = new_page(browser, errors)
    admin.goto(f"{lobby}/admin/")
    expect(admin).to_have_url(re.compile(r"/admin/login\?next="))
    admin.get_by_label("Username").fill(demo.info["adminUsername"])
    admin.get_by_label("Password").fill(demo.info["adminPassword"])
    admin.get_by_role("button", name="Sign in").click()
    expect(admin.get_by_role("heading", name="Dashboard")).to_be_visible()

    admin.get_by_role("link", name="Players", exact=True).click()
    admin.get_by_label("Player id or start of nickname").fill(nickname)
    admin.get_by_role("button", name="Search").click()
    admin.locator("a[href^='/admin/players/']").filter(has_not_text="Players").first.click()
    expect(admin.get_by_role("heading", name=re.compile(re.escape(nickname)))).to_be_visible()
    player_id = admin.locator("p.mono").first.inner_text().strip()
    expect(admin.get_by_test_id("available")).to_have_text(f"{after_bonus:.2f} XAG")

    admin.goto(f"{lobby}/admin/transactions?player={player_id}&partner=demo")
    rows = admin.locator("table tbody tr")
    withdrawal = rows.filter(has_text="withdrawal").filter(has_text=f"{sword_price}")
    deposit = rows.filter(has_text="deposit").filter(has_text=f"{bonus:.2f}")
    expect(withdrawal).to_have_count(1)
    expect(withdrawal).to_contain_text("confirmed")
    expect(deposit).to_have_count(1)
    expect(deposit).to_contain_text("confirmed")
    shot(admin, "07-admin-transactions")

    admin.get_by_role("link", name="Payment orders").click()
    order_row = admin.locator("table tbody tr", has_text="gems.large")
    expect(order_row).to_have_count(1)
    expect(order_row).to_contain_text("delivered")
    order_row.locator("a[href^='/admin/orders/']").click()
    expect(admin.locator("h1 .badge")).to_have_text("delivered")
    attempts = admin.locator("section.card", has_text="Delivery attempts").locator("tbody tr")
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_contain_text("200")
    expect(attempts.first).to_contain_text("delivered")
    shot(admin, "08-admin-order")

    # Redeliver: a second attempt, delivered again; the game de-duplicates by cpOrderId.
    admin.get_by_role("button", name="Redeliver callback").click()
    expect(admin.get_by_role("status")).to_have_text("Queued for redelivery.")
    eventually(
        admin,
        lambda: attempts.count() == 2 and admin.locator("h1 .badge").inner_text() == "delivered",
        "the redelivered callback",
        DELIVERY_MS,
    )
    expect(attempts.filter(has_text="delivered")).to_have_count(2)
    shot(admin, "09-admin-redelivered")
    page.reload()  # a fresh launch of the game: the inventory as the backend has it
    game = page.frame_locator("#game")
    expect(game.locator("#nickname")).to_have_text(f"Hi, {nickname}")
    expect(game.locator("#inventory li[data-item=gems]")).to_have_count(1)
    expect(game.locator("#inventory li[data-item=gems]")).to_contain_text(f"{TIMES}600")
    expect(game.locator("#inventory-count")).to_have_text("(601)")

    # A manual adjustment with a reason, and its audit entry.
    admin.goto(f"{lobby}/admin/players/{player_id}")
    credit = Decimal("25.00")
    admin.get_by_label(re.compile(r"^Amount")).fill(f"{credit}")
    admin.get_by_label(re.compile(r"^Reason \(recorded")).fill(ADJUST_REASON)
    admin.get_by_role("button", name="Adjust balance").click()
    expect(admin.get_by_role("status")).to_have_text(f"Adjusted by {credit} XAG.")
    after_adjust = after_bonus + credit
    expect(admin.get_by_test_id("available")).to_have_text(f"{after_adjust:.2f} XAG")
    admin.get_by_role("link", name="Audit log").click()
    adjusted = admin.locator("tr", has_text="player.adjust").filter(has_text=player_id)
    expect(adjusted).to_have_count(1)
    expect(adjusted).to_contain_text(ADJUST_REASON)
    expect(adjusted).to_contain_text(demo.info["adminUsername"])
    expect(admin.locator("tr", has_text="order.redeliver")).to_have_count(1)
    shot(admin, "10-admin-audit")
    # The player sees it too (the game page polls the balance).
    expect(page.locator("#balance-amount")).to_have_text(f"{after_adjust:.2f}")

    admin.get_by_role("link", name="Reconciliation").click()
    admin.get_by_role("button", name="Run reconciliation").click()
    expect(admin.get_by_test_id("reconcile-result")).to_have_text("OK — no differences")
    shot(admin, "11-admin-reconciliation")

    assert errors == []
    # Stopping `qwallet demo` stops the platform and the game with it.
    assert stop_demo(demo.process), "SIGTERM left part of the qwallet demo process tree running"
