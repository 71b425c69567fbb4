"""The demo studio backend, served by uvicorn on loopback, against the real platform server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from qwallet.demo.game import DemoConfig, DemoGame, create_demo_game
from qwallet.payments.callback import md5_sign, signature_header

from ..conftest import LiveServer, Platform

CALLBACK_SECRET = "MKiLHWZvGPTq2258"
QUERY_AUTH = ("qw-platform", "pl4tform-pass")


def paid_callback(
    cp_order_id: str,
    uid: str,
    product_id: str,
    price: str,
    *,
    amount: str | None = None,
    currency_code: str = "XAG",
    provider: str = "wallet",
    server_id: str = "1",
    ts_ms: int | None = None,
    secret: str = CALLBACK_SECRET,
) -> dict[str, str]:
    """The fields of the platform's paid callback (spec §2.3 plus amount, currencyCode and
    provider after extParams), signed with the platform's own ``md5_sign``."""
    ts = str(int(time.time() * 1000) if ts_ms is None else ts_ms)
    return {
        "uid": uid,
        "serverId": server_id,
        "cpOrderId": cp_order_id,
        "productId": product_id,
        "productPrice": price,
        "extParams": json.dumps({"playerId": uid}),
        "ts": ts,
        "sign": md5_sign(cp_order_id, server_id, uid, price, product_id, ts, secret),
        "amount": price if amount is None else amount,
        "currencyCode": currency_code,
        "provider": provider,
    }


NUMBERS = ("serverId", "productPrice", "ts", "amount")


def encode_callback(
    fields: dict[str, str], body_format: str = "form", *, secret: str | None = CALLBACK_SECRET
) -> tuple[bytes, dict[str, str]]:
    """The body as the platform writes it (JSON numbers as their exact text) and its headers,
    with ``X-QW-Signature`` from the platform's own ``signature_header`` unless ``secret`` is
    None."""
    if body_format == "json":
        items = [
            f"{json.dumps(k)}: {v if k in NUMBERS else json.dumps(v)}" for k, v in fields.items()
        ]
        body = ("{" + ", ".join(items) + "}").encode()
        headers = {"Content-Type": "application/json"}
    else:
        body = urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if secret is not None:
        headers["X-QW-Signature"] = signature_header(body, secret, int(time.time() * 1000))
    return body, headers


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` with uvicorn (lifespan on) on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Demo:
    """A running demo backend, its partner at the platform, and one player with a session."""

    url: str
    http: httpx.Client
    game: DemoGame
    platform: Platform
    partner: str
    player_id: str
    token: str

    def api(self, path: str, **body: Any) -> httpx.Response:
        return self.http.post(path, json={"token": self.token, **body})

    def order(self, pack_id: str, token: str | None = None) -> dict[str, Any]:
        """A real-money order the studio issues (its purchase message)."""
        response = self.http.post(
            "/api/orders", json={"token": token or self.token, "packId": pack_id}
        )
        assert response.status_code == 200, response.text
        message: dict[str, Any] = response.json()["message"]
        return message

    def callback(
        self, fields: dict[str, str], body_format: str = "form", **options: Any
    ) -> httpx.Response:
        body, headers = encode_callback(fields, body_format, **options)
        return self.http.post("/pay/quantum", content=body, headers=headers)

    def items(self, token: str | None = None) -> list[tuple[str, int]]:
        inventory = self.http.post("/api/inventory", json={"token": token or self.token}).json()
        return [(i["id"], i["quantity"]) for i in inventory["items"]]

    def new_player(self, balance: str = "100.00") -> tuple[str, str]:
        player_id = self.platform.create_player(balance)
        return player_id, self.platform.create_session(player_id, self.partner)

    def wallet(self, player_id: str | None = None) -> dict[str, Any]:
        return self.platform.player(player_id or self.player_id)


@pytest.fixture
def demo(server: LiveServer, platform: Platform, tmp_path: Path) -> Iterator[Demo]:
    username, password = platform.create_partner()
    player_id = platform.create_player("100.00")
    token = platform.create_session(player_id, username)
    config = DemoConfig(
        platform_url=server.url,
        username=username,
        password=password,
        callback_secret=CALLBACK_SECRET,
        query_username=QUERY_AUTH[0],
        query_password=QUERY_AUTH[1],
        data_dir=tmp_path / "demo-data",
        bonus_cooldown_s=0,
    )
    app = create_demo_game(config)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Demo(url, http, app.state.game, platform, username, player_id, token)
