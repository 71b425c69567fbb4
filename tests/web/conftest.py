"""Fixtures for the player pages: a fast payment worker, browser-like clients, partners with a
game client, and the partner kit's real payment-callback receiver on loopback."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwallet.clock import ManualClock
from qwallet.partner import IssuedOrder, PaymentCallbackApp, PaymentOrder, SQLiteStore
from qwallet.service import partners
from qwallet.service.player_logins import set_player_password
from qwallet.settings import Settings
from tests.conftest import LiveServer, Platform
from tests.partner.conftest import serve

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CONFIG = re.compile(r'<script type="application/json" id="game-config">(.*?)</script>', re.S)
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        payment_worker_interval_s=0.05,
        payment_retry_schedule_s=(5.0, 30.0),
        payment_max_attempts=3,
        payment_callback_timeout_s=5.0,
        payment_sandbox_delay_s=2.0,
    )


class Browser:
    """An httpx client that keeps cookies and knows the page's CSRF token."""

    def __init__(self, server: LiveServer) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.get(path, **kwargs)
        match = CSRF.search(response.text)
        if match:
            self.csrf = match.group(1)
        return response

    def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        self.get("/login")
        response = self.client.post(
            "/login",
            data={"csrf_token": self.csrf, "username": username, "password": password, "next": "/"},
        )
        if response.status_code == 303:
            self.get("/")  # sign-in rotates the CSRF token: pick up the new one
        return response

    def post_json(self, path: str, body: Any, *, csrf: bool = True) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.client.post(path, json=body, headers=headers)

    def play(self, game: str) -> dict[str, Any]:
        """Open the game page; return its config (token, csrf, origin)."""
        import json

        response = self.get(f"/play/{game}")
        assert response.status_code == 200, response.text
        match = CONFIG.search(response.text)
        assert match, response.text
        config: dict[str, Any] = json.loads(match.group(1))
        return config

    def order(self, token: str, **message: Any) -> httpx.Response:
        return self.post_json("/payments/orders", {"token": token, "message": purchase(**message)})

    def pay(self, order_id: str, method: str, option: str | None = None) -> httpx.Response:
        return self.post_json(
            f"/payments/orders/{order_id}/pay", {"method": method, "option": option}
        )

    def close(self) -> None:
        self.client.close()


def purchase(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "serverId": 10001,
        "cpOrderId": secrets.token_hex(16),
        "productId": "wm.spin.1",
        "productName": "Ten spins",
        "productDesc": "Ten spins of the wheel",
        "productNumber": 1,
        "productPrice": 4.99,
        "extParams": "level=3&slot=2",
    }
    message.update(changes)
    return {k: v for k, v in message.items() if v is not None}


@dataclass
class Game:
    name: str
    client_url: str


@dataclass
class Player:
    id: str
    username: str


@dataclass
class World:
    platform: Platform
    server: LiveServer
    browsers: list[Browser] = field(default_factory=list)

    def game(
        self,
        client_url: str = "http://127.0.0.1:9/game/",
        *,
        callback_url: str | None = None,
        secret: str | None = None,
        callback_format: str = "form",
        payment_currency: str = "XAG",
        sandbox: bool = False,
        payment_methods: str = "wallet",
    ) -> Game:
        """A partner with a game client; a sandbox partner offers the sandbox card too."""
        name = f"game-{secrets.token_hex(4)}"
        platform = self.platform
        if sandbox and payment_methods == "wallet":
            payment_methods = "wallet,sandbox_card"
        platform.run(
            partners.create_partner(
                platform.store,
                name,
                platform.clock.now_ms(),
                client_url=client_url,
                payment_currency=platform.settings.currency_registry[payment_currency],
                sandbox=sandbox,
                payment_methods=payment_methods.split(","),
                # The test receivers listen on loopback without TLS.
                allow_http_callback=True,
            )
        )
        set_partner(
            platform,
            name,
            callback_url=callback_url,
            callback_secret=secret,
            callback_format=callback_format,
            display_name=f"Game {name}",
        )
        return Game(name, client_url)

    def player(self, balance: str = "100.00", currency: str = "XAG") -> Player:
        player_id = self.platform.create_player(balance, currency)
        username = f"p{secrets.token_hex(5)}"
        self.platform.run(
            set_player_password(
                self.platform.store,
                player_id,
                username,
                self.platform.clock.now_ms(),
                password=PASSWORD,
            )
        )
        return Player(player_id, username)

    def browser(self, player: Player | None = None) -> Browser:
        browser = Browser(self.server)
        self.browsers.append(browser)
        if player is not None:
            response = browser.sign_in(player.username)
            assert response.status_code == 303, response.text
        return browser

    def order_row(self, order_id: str) -> dict[str, Any]:
        async def fetch() -> dict[str, Any]:
            async with self.platform.store.transaction() as tx:
                row = await tx.fetchrow("SELECT * FROM payment_orders WHERE id = $1", order_id)
            assert row is not None
            return dict(row)

        return self.platform.run(fetch())

    def attempts(self, order_id: str) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            async with self.platform.store.transaction() as tx:
                rows = await tx.fetch(
                    "SELECT * FROM payment_attempts WHERE order_id = $1 ORDER BY attempt",
                    order_id,
                )
            return [dict(row) for row in rows]

        return self.platform.run(fetch())


def set_partner(platform: Platform, name: str, **columns: Any) -> None:
    async def update() -> None:
        async with platform.store.transaction() as tx:
            for column, value in columns.items():
                if value is not None:
                    await tx.execute(
                        f"UPDATE partners SET {column} = $1 WHERE name = $2", value, name
                    )

    platform.run(update())


@pytest.fixture
def world(platform: Platform, server: LiveServer) -> Iterator[World]:
    world = World(platform, server)
    yield world
    for browser in world.browsers:
        browser.close()


@dataclass
class Receiver:
    """The partner kit's ``PaymentCallbackApp`` under uvicorn: verifies sign and header."""

    url: str
    secret: str
    delivered: list[PaymentOrder]
    # The studio delivers only orders it issued itself, to the player it issued them to.
    issued: dict[str, IssuedOrder] = field(default_factory=dict)

    def issue(self, cp_order_id: str, uid: str) -> None:
        self.issued[cp_order_id] = IssuedOrder(uid)


@contextmanager
def kit_receiver(
    tmp_path: Path, *, body_format: str = "form", fail_first: int = 0
) -> Iterator[Receiver]:
    secret = secrets.token_urlsafe(16)
    delivered: list[PaymentOrder] = []
    failures = {"left": fail_first}
    lock = threading.Lock()

    def deliver(order: PaymentOrder) -> None:
        with lock:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise RuntimeError("the game server is busy")
            delivered.append(order)

    issued: dict[str, IssuedOrder] = {}
    app = PaymentCallbackApp(
        SQLiteStore(tmp_path / f"kit-{secrets.token_hex(4)}.db"),
        secret,
        deliver,
        issued_order=issued.get,
        body_format=body_format,  # type: ignore[arg-type]
    )
    with serve(app) as url:
        yield Receiver(f"{url}/pay/quantum", secret, delivered, issued)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def advance(clock: ManualClock, seconds: float) -> None:
    clock.advance(int(seconds * 1000))
