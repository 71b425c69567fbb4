"""In a real browser (Playwright driving Debian's Chromium): sign in, lobby, play, a purchase
posted by the game's iframe, the payment dialog, pay from the wallet, the balance drops; messages
from any other origin are ignored. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from tests.partner.conftest import serve

from .conftest import PASSWORD, World, purchase

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
PAID = re.compile("^(paid|delivered)$")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MESSAGE = purchase(cpOrderId="browser-order-1", productNumber=2, productPrice=2.5)
FOREIGN = purchase(cpOrderId="foreign-order-1")


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"  # the storage half runs on both databases elsewhere; this is about the page


GAME_PAGE = """<!doctype html><html><body style="background:#223;color:#fff;font-family:sans-serif">
<h1>Fake game</h1><p id="launch"></p>
<button id="buy">Buy 2 spins</button><p id="reply">no reply</p>
<iframe id="evil" src="%(evil)s" width="300" height="60"></iframe>
<script>
document.getElementById("launch").textContent = location.search;
document.getElementById("buy").addEventListener("click", function () {
  window.parent.postMessage(%(message)s, "*");
});
window.addEventListener("message", function (event) {
  if (event.data && event.data.type === "qw.payment") {
    document.getElementById("reply").textContent = event.data.cpOrderId + ":" + event.data.state;
  }
});
</script></body></html>"""

EVIL_PAGE = """<!doctype html><html><body>evil<script>
window.sendForeign = function () { window.top.postMessage(%(message)s, "*"); };
</script></body></html>"""


@pytest.fixture(autouse=True)
def database_off_the_browser_thread(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Playwright's sync API runs an event loop on this thread: database helpers use another."""
    executor = ThreadPoolExecutor(1)
    run = world.platform.run
    monkeypatch.setattr(
        world.platform, "run", lambda coroutine: executor.submit(run, coroutine).result()
    )
    yield
    executor.shutdown()


@pytest.fixture(scope="module")
def fake_game() -> Iterator[str]:
    """A game client on another origin; its nested frame is on a third (localhost vs 127.0.0.1)."""
    state: dict[str, Any] = {}

    async def game(request: Request) -> HTMLResponse:
        evil = str(state["url"]).replace("127.0.0.1", "localhost") + "/evil"
        return HTMLResponse(GAME_PAGE % {"evil": evil, "message": json.dumps(MESSAGE)})

    async def evil(_request: Request) -> HTMLResponse:
        return HTMLResponse(EVIL_PAGE % {"message": json.dumps(FOREIGN)})

    async def callback(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("success")

    app = Starlette(
        routes=[
            Route("/game/", game),
            Route("/evil", evil),
            Route("/pay", callback, methods=["POST"]),
        ]
    )
    with serve(app) as url:
        state["url"] = url
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"player-{name}.png"), full_page=True)


def orders_with(world: World, cp_order_id: str) -> int:
    async def count() -> int:
        async with world.platform.store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT COUNT(*) AS n FROM payment_orders WHERE cp_order_id = $1", cp_order_id
            )
        assert row is not None
        return int(row["n"])

    return world.platform.run(count())


def test_buy_with_wallet_in_the_browser(world: World, fake_game: str, chromium: Any) -> None:
    game = world.game(f"{fake_game}/game/", callback_url=f"{fake_game}/pay", secret="s3cret")
    player = world.player("100.00")
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{world.server.url}/")
        assert page.url.startswith(f"{world.server.url}/login")
        page.fill("input[name=username]", player.username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{world.server.url}/")
        assert page.inner_text("[data-testid=balance]") == "100.00 XAG"
        shot(page, "1-lobby")

        page.click(f"[data-testid=play-{game.name}]")
        page.wait_for_url(re.compile(f"/play/{game.name}$"))
        frame = page.frame_locator("#game")
        launch = frame.locator("#launch").inner_text()
        assert "token=" in launch and "currency=XAG" in launch and "language=en" in launch

        # Messages from anywhere but the game's iframe and origin are ignored.
        evil_frame = next(f for f in page.frames if f.url.endswith("/evil"))
        evil_frame.evaluate("window.sendForeign()")
        page.evaluate(f"window.postMessage({json.dumps(FOREIGN)}, '*')")
        page.wait_for_timeout(800)
        assert page.locator("#pay-dialog").is_hidden()
        assert orders_with(world, "foreign-order-1") == 0

        frame.locator("#buy").click()
        dialog = page.locator("#pay-dialog")
        dialog.wait_for(state="visible")
        assert page.inner_text("#pay-product") == "Ten spins"
        assert page.inner_text("#pay-price") == "2.5 XAG"
        assert page.inner_text("#pay-quantity") == "2"
        assert page.inner_text("#pay-total") == "5.00 XAG"
        shot(page, "2-dialog")

        page.click("[data-testid=pay-wallet]")
        expect(dialog).to_have_attribute("data-state", PAID)
        expect(page.locator("#balance-amount")).to_have_text("95.00")
        expect(frame.locator("#reply")).to_have_text(re.compile("^browser-order-1:"))
        shot(page, "3-paid")
        assert orders_with(world, "browser-order-1") == 1
        assert world.platform.player(player.id)["available"] == "95.00"
        assert world.platform.reconcile().ok

        # The same message again shows the same (now paid) order, nothing to pay.
        page.click("#pay-close")
        page.evaluate("document.getElementById('pay-dialog').dataset.state = 'reset'")
        frame.locator("#buy").click()
        expect(dialog).to_have_attribute("data-state", PAID)
        assert page.locator("#pay-methods button").count() == 0
        assert orders_with(world, "browser-order-1") == 1
        assert errors == []
    finally:
        context.close()
