"""The demo studio backend, served by uvicorn on loopback, against the real platform server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from qwallet.demo import DemoConfig, DemoGame, create_demo_game

from ..conftest import LiveServer, Platform

CALLBACK_SECRET = "MKiLHWZvGPTq2258"
QUERY_AUTH = ("qw-platform", "pl4tform-pass")


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
