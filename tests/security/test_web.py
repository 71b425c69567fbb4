"""Browser sign-in, sessions and request hygiene (issue 10, findings 5-8 and the page hardening).

Every test drives a real server on loopback, on SQLite and on PostgreSQL, the way the attack was
made: guessing passwords, replaying a cookie copied before sign-out, posting huge bodies, putting
U+0000 into paths and queries, naming ids that do not exist. The browser tests (Chromium through
Playwright) check the API documentation page under its CSP and the game iframe's sandbox.
"""

from __future__ import annotations

import gc
import json
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

from qwallet.clock import ManualClock
from qwallet.service import operators, partners
from qwallet.service.player_logins import set_player_password
from qwallet.settings import Settings
from tests.admin.conftest import Console, csrf_of
from tests.conftest import LiveServer, Platform
from tests.partner.conftest import serve
from tests.web.conftest import PASSWORD, Browser, purchase, set_partner

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PROXY = "127.0.0.1/32"  # the test client is the "proxy": X-Forwarded-For picks the address


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        trusted_proxies=(PROXY,),
        payment_worker_interval_s=0.05,
        payment_sandbox_delay_s=0.2,
    )


def address() -> str:
    """A fresh client address (documentation range), one per simulated machine."""
    return f"198.51.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


class Player:
    def __init__(self, platform: Platform) -> None:
        self.id = platform.create_player("100.00")
        self.username = f"p{secrets.token_hex(5)}"
        platform.run(
            set_player_password(
                platform.store, self.id, self.username, platform.clock.now_ms(), password=PASSWORD
            )
        )


def browser_at(server: LiveServer, client_address: str) -> Browser:
    browser = Browser(server)
    browser.client.headers["X-Forwarded-For"] = client_address
    return browser


def try_sign_in(browser: Browser, username: str, password: str) -> httpx.Response:
    if browser.get("/login").status_code == 303:  # signed in already: the lobby has the token
        browser.get("/")
    return browser.client.post(
        "/login",
        data={"csrf_token": browser.csrf, "username": username, "password": password, "next": "/"},
    )


def signed_in(browser: Browser) -> bool:
    return browser.client.get("/").status_code == 200


# --------------------------------------------------------------------------- finding 5: players


@pytest.mark.finding("5")
def test_player_sign_in_is_throttled_per_username_and_address(
    server: LiveServer, platform: Platform, settings: Settings
) -> None:
    """Five wrong passwords from one address, then the right one is refused (429, Retry-After)
    from that address; the player signs in from another; a minute later one more try is back."""
    player = Player(platform)
    attacker = browser_at(server, address())
    for _ in range(settings.sign_in_failure_burst):
        assert try_sign_in(attacker, player.username, "wrong password").status_code == 401
    refused = try_sign_in(attacker, player.username, PASSWORD)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in refused.text
    assert not signed_in(attacker)

    owner = browser_at(server, address())
    assert try_sign_in(owner, player.username, PASSWORD).status_code == 303
    assert signed_in(owner)

    platform.clock.advance(int(settings.sign_in_failure_refill_s * 1000))
    assert try_sign_in(attacker, player.username, PASSWORD).status_code == 303
    # Right passwords cost nothing: signing in again and again is never throttled.
    regular = browser_at(server, address())
    for _ in range(settings.sign_in_failure_burst + 2):
        assert try_sign_in(regular, player.username, PASSWORD).status_code == 303
    for browser in (attacker, owner, regular):
        browser.close()


@pytest.mark.finding("5")
def test_player_sign_in_is_throttled_per_address(
    server: LiveServer, platform: Platform, settings: Settings
) -> None:
    """One address guessing across many usernames runs out of the per-address budget (the Wallet
    API's): then even a right password for another account is refused there."""
    player = Player(platform)
    guesser = browser_at(server, address())
    for _ in range(settings.auth_failure_burst):
        name = f"nobody-{secrets.token_hex(4)}"
        assert try_sign_in(guesser, name, "guess").status_code == 401
    assert try_sign_in(guesser, player.username, PASSWORD).status_code == 429
    guesser.close()


@pytest.mark.finding("5")
def test_sign_in_budget_is_shared_by_two_server_processes(
    server: LiveServer, platform: Platform, settings: Settings, clock: ManualClock
) -> None:
    """Two app instances on one database (as ``--workers 2`` or two machines): failures on
    either spend the same budget, for players and for operators."""
    second = LiveServer(settings, clock)
    second.start()
    try:
        player = Player(platform)
        where = address()
        first_browser, second_browser = browser_at(server, where), browser_at(second, where)
        for i in range(settings.sign_in_failure_burst):
            browser = first_browser if i % 2 else second_browser
            assert try_sign_in(browser, player.username, "wrong").status_code == 401
        assert try_sign_in(first_browser, player.username, PASSWORD).status_code == 429
        assert try_sign_in(second_browser, player.username, PASSWORD).status_code == 429

        name, password = new_operator(platform)
        where = address()
        consoles = [
            console_at(server, name, password, where),
            console_at(second, name, password, where),
        ]
        for i in range(settings.sign_in_failure_burst):
            assert consoles[i % 2].sign_in_with("wrong").status_code == 401
        for console in consoles:
            assert console.sign_in_with(password).status_code == 429
        for client in (first_browser, second_browser, *consoles):
            client.close()
    finally:
        second.stop()


# --------------------------------------------------------------------------- finding 5: admin


class AddressedConsole(Console):
    def __init__(self, server: LiveServer, username: str, password: str, where: str) -> None:
        super().__init__(server, username, password)
        self.client.headers["X-Forwarded-For"] = where

    def sign_in_with(self, password: str) -> httpx.Response:
        token = csrf_of(self.client.get("/admin/login").text)
        return self.client.post(
            "/admin/login",
            data={"csrf_token": token, "username": self.username, "password": password},
        )


def new_operator(platform: Platform) -> tuple[str, str]:
    name = f"op-{secrets.token_hex(3)}"
    issued = platform.run(operators.create_operator(platform.store, name, platform.clock.now_ms()))
    return issued.username, issued.password


def console_at(server: LiveServer, name: str, password: str, where: str) -> AddressedConsole:
    return AddressedConsole(server, name, password, where)


@pytest.mark.finding("H")
def test_admin_sign_in_is_throttled_per_username_and_address(
    server: LiveServer, platform: Platform, settings: Settings
) -> None:
    name, password = new_operator(platform)
    attacker = console_at(server, name, password, address())
    for _ in range(settings.sign_in_failure_burst):
        assert attacker.sign_in_with("wrong").status_code == 401
    refused = attacker.sign_in_with(password)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert attacker.get("/admin/").status_code == 303  # not signed in
    # The operator, from their own address, is not locked out by the guesser.
    operator = console_at(server, name, password, address())
    assert operator.sign_in_with(password).status_code == 303
    assert operator.get("/admin/").status_code == 200
    attacker.close()
    operator.close()


# --------------------------------------------------------------------------- finding 6: players


def game_partner(platform: Platform) -> tuple[str, tuple[str, str]]:
    name = f"game-{secrets.token_hex(4)}"
    credential = platform.run(
        partners.create_partner(
            platform.store, name, platform.clock.now_ms(), client_url="http://127.0.0.1:9/game/"
        )
    )
    set_partner(platform, name, display_name=f"Game {name}")
    return name, (credential.username, credential.password)


def game_token(browser: Browser, game: str) -> str:
    page = browser.get(f"/play/{game}")
    assert page.status_code == 200, page.text
    match = re.search(r'<script type="application/json" id="game-config">(.*?)</script>', page.text)
    assert match
    return str(json.loads(match.group(1))["token"])


def wallet_call(server: LiveServer, auth: tuple[str, str], endpoint: str, body: Any) -> Any:
    response = httpx.post(f"{server.url}/wallet/{endpoint}", json=body, auth=auth, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def amount(text: str) -> dict[str, Any]:
    return {"amount": float(text), "currencyCode": "XAG"}


@pytest.mark.finding("6")
def test_player_sign_out_ends_every_copy_of_the_cookie_and_the_game_tokens(
    server: LiveServer, platform: Platform
) -> None:
    """A cookie copied before sign-out is refused afterwards; the game token is revoked for new
    calls (110), while confirm and rollback of money held before still complete."""
    game, auth = game_partner(platform)
    player = Player(platform)
    browser = browser_at(server, address())
    assert try_sign_in(browser, player.username, PASSWORD).status_code == 303
    browser.get("/")
    token = game_token(browser, game)
    for mm_id in ("held-1", "held-2"):
        held = wallet_call(
            server,
            auth,
            "withdraw",
            {"token": token, "mmTransactionId": mm_id, "amount": amount("10.00")},
        )
        assert "errorCode" not in held, held
    copied = dict(browser.client.cookies)

    assert browser.client.post("/logout", data={"csrf_token": browser.csrf}).status_code == 303
    thief = httpx.Client(base_url=server.url, cookies=copied, follow_redirects=False)
    assert thief.get("/").status_code == 303
    assert thief.get("/me/balance").status_code == 401
    assert thief.get(f"/play/{game}").status_code == 303

    for endpoint in ("verifySession", "getBalance"):
        assert wallet_call(server, auth, endpoint, {"token": token})["errorCode"] == 110
    late = wallet_call(
        server,
        auth,
        "withdraw",
        {"token": token, "mmTransactionId": "late", "amount": amount("1.00")},
    )
    assert late["errorCode"] == 110
    confirmed = wallet_call(
        server,
        auth,
        "confirmWithdrawal",
        {"token": token, "mmTransactionId": "held-1", "amount": amount("10.00")},
    )
    assert confirmed["balance"]["amount"] == 80.0, confirmed
    rolled = wallet_call(
        server, auth, "rollbackWithdrawal", {"token": token, "mmTransactionId": "held-2"}
    )
    assert rolled["balance"]["amount"] == 90.0, rolled
    assert platform.player(player.id)["held"] == "0.00"
    assert platform.reconcile().ok
    thief.close()
    browser.close()


@pytest.mark.finding("6")
def test_password_change_and_block_end_the_player_sign_in(
    server: LiveServer, platform: Platform
) -> None:
    game, auth = game_partner(platform)
    player = Player(platform)
    browser = browser_at(server, address())
    assert try_sign_in(browser, player.username, PASSWORD).status_code == 303
    platform.run(
        set_player_password(
            platform.store, player.id, player.username, platform.clock.now_ms(), password=PASSWORD
        )
    )
    assert not signed_in(browser)

    assert try_sign_in(browser, player.username, PASSWORD).status_code == 303
    token = game_token(browser, game)
    held = wallet_call(
        server,
        auth,
        "withdraw",
        {"token": token, "mmTransactionId": "b-1", "amount": amount("5.00")},
    )
    assert "errorCode" not in held
    platform.block(player.id)
    assert not signed_in(browser)
    assert wallet_call(server, auth, "getBalance", {"token": token})["errorCode"] == 110
    # The money held before the block is still released by the partner's rollback.
    rolled = wallet_call(
        server, auth, "rollbackWithdrawal", {"token": token, "mmTransactionId": "b-1"}
    )
    assert rolled["balance"]["amount"] == 100.0, rolled
    platform.block(player.id, False)
    browser.close()


# --------------------------------------------------------------------------- finding 6: operators


@pytest.mark.finding("6")
def test_operator_sign_out_ends_every_copy_of_the_cookie(
    server: LiveServer, platform: Platform
) -> None:
    """A console cookie copied before sign-out cannot load a page or block a player after it."""
    name, password = new_operator(platform)
    victim = platform.create_player("10.00")
    console = console_at(server, name, password, address())
    assert console.sign_in_with(password).status_code == 303
    csrf = console.csrf()
    copied = dict(console.client.cookies)
    assert console.post("/admin/logout").status_code == 303

    thief = httpx.Client(base_url=server.url, cookies=copied, follow_redirects=False)
    assert thief.get("/admin/").status_code == 303
    blocked = thief.post(
        f"/admin/players/{victim}/block", data={"csrf_token": csrf, "blocked": "1"}
    )
    assert blocked.status_code == 403
    assert platform.player(victim)["status"] == "active"

    # A password reset ends a sign-in as well.
    assert console.sign_in_with(password).status_code == 303
    platform.run(operators.reset_password(platform.store, name))
    assert console.get("/admin/").status_code == 303
    thief.close()
    console.close()


# --------------------------------------------------------------------------- finding 7


def _response_head(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.finding("7")
@pytest.mark.parametrize("path", ["/login", "/admin/login", "/logout", "/api/sessions"])
def test_a_declared_large_body_is_refused_before_it_is_sent(server: LiveServer, path: str) -> None:
    """The 413 arrives while the client has sent the headers only: the server read nothing."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n".encode()
        )
        head = _response_head(sock)
    assert head.startswith(b"HTTP/1.1 413"), head


@pytest.mark.finding("7")
def test_a_streamed_large_form_is_cut_off_without_buffering_it(server: LiveServer) -> None:
    """The attack of the finding: POST /login with 100 fields of ~1 MiB, streamed (chunked, no
    Content-Length). The server answers 413 once past 64 KiB, and its memory does not grow."""
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    boundary = "qwallet-test-boundary"
    field = b"a" * 1_000_000
    sent = {"bytes": 0}

    def pieces() -> Iterator[bytes]:
        for i in range(100):
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'.encode()
            yield field
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )

        def send_body() -> None:
            try:
                for piece in pieces():
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    sent["bytes"] += len(piece)
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server closed the connection after its 413

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        head = _response_head(sock, timeout_s=30)
        sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)
    gc.collect()
    grown_mib = (process.memory_info().rss - rss_before) / 2**20
    assert head.startswith(b"HTTP/1.1 413"), head
    # Before the cap this grew by ~83 MiB (the whole body parsed into memory).
    assert grown_mib < 20, f"server memory grew by {grown_mib:.1f} MiB"


@pytest.mark.finding("7")
def test_a_body_within_the_cap_still_works(server: LiveServer, platform: Platform) -> None:
    player = Player(platform)
    browser = browser_at(server, address())
    assert try_sign_in(browser, player.username, PASSWORD).status_code == 303
    browser.close()


# --------------------------------------------------------------------------- finding 8


@pytest.mark.finding("8")
def test_nul_in_path_or_query_is_400_everywhere(server: LiveServer, platform: Platform) -> None:
    """U+0000 in a path or query string was a 500 with a traceback on PostgreSQL."""
    player = Player(platform)
    browser = browser_at(server, address())
    assert try_sign_in(browser, player.username, PASSWORD).status_code == 303
    name, password = new_operator(platform)
    console = console_at(server, name, password, address())
    assert console.sign_in_with(password).status_code == 303
    for client, path in [
        (browser.client, "/play/%00"),
        (browser.client, "/payments/orders/%00"),
        (browser.client, "/login?next=%00"),
        (browser.client, "/?x=a%00b"),
        (console.client, "/admin/transactions?partner=%00"),
        (console.client, "/admin/transactions?mm_id=x%00"),
        (console.client, "/admin/players?q=%00"),
        (console.client, "/admin/players/%00"),
        (console.client, "/admin/audit?operator=%00"),
        (console.client, "/admin/orders/%00"),
    ]:
        response = client.get(path)
        assert response.status_code == 400, (path, response.status_code, response.text)
        assert "U+0000" in response.text
    browser.close()
    console.close()


@pytest.mark.finding("8")
def test_unknown_ids_in_the_console_are_404_pages(server: LiveServer, platform: Platform) -> None:
    name, password = new_operator(platform)
    console = console_at(server, name, password, address())
    assert console.sign_in_with(password).status_code == 303
    for path in ("/admin/players/nobody", "/admin/transactions/none", "/admin/orders/none"):
        page = console.get(path)
        assert page.status_code == 404, (path, page.text)
        assert "Cannot show that" in page.text
    for path, data in [
        ("/admin/players/nobody/block", {"blocked": "1"}),
        ("/admin/players/nobody/block", {"blocked": "0"}),
        ("/admin/players/nobody/adjust", {"amount": "1.00", "reason": "x"}),
        ("/admin/transactions/none/resolve", {"decision": "confirm", "reason": "x"}),
        ("/admin/orders/none/redeliver", {}),
    ]:
        response = console.post(path, data)
        assert response.status_code == 404, (path, response.status_code, response.text)
    console.close()


# --------------------------------------------------------------------------- hardening


@pytest.mark.finding("H")
def test_player_sign_in_rotates_the_csrf_token(server: LiveServer, platform: Platform) -> None:
    """A CSRF token learnt before sign-in (e.g. planted with the session) is dead after it."""
    player = Player(platform)
    browser = browser_at(server, address())
    browser.get("/login")
    before = browser.csrf
    assert try_sign_in(browser, player.username, PASSWORD).status_code == 303
    browser.get("/")
    assert browser.csrf and browser.csrf != before
    assert browser.client.post("/logout", data={"csrf_token": before}).status_code == 403
    assert signed_in(browser)
    browser.close()


@pytest.mark.finding("H")
def test_api_docs_page_has_csp_and_frame_protection(server: LiveServer) -> None:
    page = httpx.get(f"{server.url}/docs/api")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src 'self'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.text and "<style" not in page.text
    for asset in ("/static/docs/api-docs.js", "/static/docs/api-docs.css"):
        assert httpx.get(f"{server.url}{asset}").status_code == 200


# --------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def chromium(backend: str) -> Iterator[Any]:
    if backend != "sqlite":
        pytest.skip("the pages are the same on both backends; the browser runs on SQLite")
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def off_thread(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Playwright's sync API runs an event loop on this thread: database helpers use another."""
    executor = ThreadPoolExecutor(1)
    run = platform.run
    monkeypatch.setattr(platform, "run", lambda coroutine: executor.submit(run, coroutine).result())
    yield
    executor.shutdown()


@pytest.mark.finding("H")
def test_api_docs_page_renders_under_its_csp(server: LiveServer, chromium: Any) -> None:
    context = chromium.new_context()
    page = context.new_page()
    problems: list[str] = []
    failed: list[str] = []
    # A CSP violation shows as a console error ("Refused to …"); a missing file as a response.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "response",
        lambda r: failed.append(r.url) if r.status >= 400 and "favicon" not in r.url else None,
    )
    try:
        page.goto(f"{server.url}/docs/api")
        page.wait_for_function("document.querySelectorAll('#nav a').length > 10")
        assert "withdraw" in page.inner_text("#main")
        rules = page.evaluate("document.styleSheets[0].cssRules.length")
        assert rules > 10  # the stylesheet loaded and applies
        assert page.evaluate("getComputedStyle(document.querySelector('nav')).position") in (
            "sticky",
            "static",
        )
        assert problems == [] and failed == []
    finally:
        context.close()


HOSTILE_GAME = """<!doctype html><html><body>
<p id="origin"></p><p id="backend">?</p><p id="popup">?</p>
<button id="buy">Buy</button><button id="escape">Escape</button><button id="open">Open</button>
<p id="reply">no reply</p>
<script>
document.getElementById("origin").textContent = location.origin;
fetch("/api/ping").then(function (r) { return r.json(); }).then(function (d) {
  document.getElementById("backend").textContent = d.pong ? "ok" : "bad";
}).catch(function (e) { document.getElementById("backend").textContent = "failed " + e; });
document.getElementById("buy").addEventListener("click", function () {
  window.parent.postMessage(%(message)s, "%(platform)s");
});
document.getElementById("escape").addEventListener("click", function () {
  try { window.top.location.href = "%(platform)s/escaped"; } catch (e) {}
});
document.getElementById("open").addEventListener("click", function () {
  var w = null;
  try { w = window.open("%(platform)s/popup", "_blank"); } catch (e) {}
  document.getElementById("popup").textContent = w ? "opened" : "blocked";
});
window.addEventListener("message", function (event) {
  if (event.data && event.data.type === "qw.payment") {
    document.getElementById("reply").textContent = event.data.cpOrderId + ":" + event.data.state;
  }
});
</script></body></html>"""


@pytest.mark.finding("H")
def test_game_iframe_is_sandboxed_and_the_game_still_buys(
    server: LiveServer, platform: Platform, chromium: Any, off_thread: None
) -> None:
    """The game keeps scripts, its own origin and its backend, and its purchase message still
    opens the payment dialog and pays; it can no longer navigate the platform page away (even on
    a click) or open popups."""
    message = purchase(cpOrderId=f"sandbox-{secrets.token_hex(4)}", productPrice=2.5)

    async def game(_request: Request) -> HTMLResponse:
        return HTMLResponse(HOSTILE_GAME % {"message": json.dumps(message), "platform": server.url})

    async def ping(_request: Request) -> JSONResponse:
        return JSONResponse({"pong": True})

    async def callback(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("success")

    app = Starlette(
        routes=[
            Route("/game/", game),
            Route("/api/ping", ping),
            Route("/pay", callback, methods=["POST"]),
        ]
    )
    player = Player(platform)
    with serve(app) as game_url:
        game_url = game_url.replace("127.0.0.1", "localhost")  # another origin than the platform
        name = f"game-{secrets.token_hex(4)}"
        platform.run(
            partners.create_partner(
                platform.store,
                name,
                platform.clock.now_ms(),
                client_url=f"{game_url}/game/",
                payment_currency=platform.xag,
            )
        )
        set_partner(platform, name, callback_url=f"{game_url}/pay", callback_secret="s3cret")
        context = chromium.new_context()
        page = context.new_page()
        try:
            page.goto(f"{server.url}/login")
            page.fill("input[name=username]", player.username)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/")
            page.goto(f"{server.url}/play/{name}")
            sandbox = page.get_attribute("#game", "sandbox")
            assert sandbox is not None and set(sandbox.split()) == {
                "allow-scripts",
                "allow-same-origin",
            }
            frame = page.frame_locator("#game")
            playwright_sync = pytest.importorskip("playwright.sync_api")
            expect = playwright_sync.expect
            expect(frame.locator("#origin")).to_have_text(game_url)
            expect(frame.locator("#backend")).to_have_text("ok")

            frame.locator("#escape").click()
            page.wait_for_timeout(800)
            assert page.url == f"{server.url}/play/{name}"
            frame.locator("#open").click()
            expect(frame.locator("#popup")).to_have_text("blocked")
            assert len(context.pages) == 1

            frame.locator("#buy").click()
            dialog = page.locator("#pay-dialog")
            dialog.wait_for(state="visible")
            page.click("[data-testid=pay-wallet]")
            expect(dialog).to_have_attribute("data-state", re.compile("^(paid|delivered)$"))
            expect(frame.locator("#reply")).to_have_text(re.compile(f"^{message['cpOrderId']}:"))
            deadline = time.monotonic() + 10
            while platform.player(player.id)["available"] != "97.50":
                assert time.monotonic() < deadline, platform.player(player.id)
                time.sleep(0.1)
        finally:
            context.close()
