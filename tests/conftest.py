"""Shared fixtures: a fresh database per module on each backend, a live server on loopback.

Storage tests run twice, on SQLite and on PostgreSQL. The PostgreSQL half uses the server at
``QWALLET_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), creates its
own database and drops it afterwards; it is skipped, with the reason, only when no server answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from qwallet.app import create_app
from qwallet.clock import ManualClock
from qwallet.domain.money import parse_operator_amount
from qwallet.service import partners, players, reconcile, sessions
from qwallet.settings import Settings
from qwallet.store import migrate
from qwallet.store.factory import Store, open_store

T = TypeVar("T")

PG_URL = os.environ.get("QWALLET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgres"]
UNLIMITED_RPS = 1_000_000.0
UNLIMITED_ENV = {
    f"QWALLET_RATE_LIMIT_{who}_{what}": "1000000"
    for who in ("PLAYER", "PARTNER")
    for what in ("RPS", "BURST")
}


def _pg_admin_url() -> str:
    return PG_URL


@cache
def postgres_unavailable_reason() -> str | None:
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(_pg_admin_url(), timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as error:
        return f"PostgreSQL at {PG_URL} is not reachable: {error!r}"
    try:
        import qwallet.store.postgres  # noqa: F401
    except ImportError as error:
        return f"PostgreSQL adapter not importable: {error}"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip a test whose server is missing, except in CI (``CI`` set): there the PostgreSQL half
    is part of what CI proves, so a missing server fails the run instead of thinning it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run this half: it does not skip it)")
    pytest.skip(reason)


def require_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason:
        skip_or_fail(reason)


def _pg_url_for(database: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{database}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_pg_admin_url(), timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def fresh_database_url(backend: str, directory: Path) -> Iterator[str]:
    """Create an empty, migrated database; yield its URL; drop it afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{directory / 'qwallet.db'}"
        migrate.upgrade(url)
        yield url
        return
    require_postgres()
    name = f"qwallet_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = _pg_url_for(name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform:
    """Operator-side helpers on the test database, with the server's (manual) clock."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.settings = settings
        self.clock = clock
        self._runner = asyncio.Runner()
        self.store: Store = self.run(open_store(settings))
        self.xag = settings.currency_registry["XAG"]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def close(self) -> None:
        self.run(self.store.close())
        self._runner.close()

    def amount(self, text: str, currency: str = "XAG") -> int:
        return parse_operator_amount(text, self.settings.currency_registry[currency])

    def create_partner(
        self, ip_allow: list[str] | None = None, payment_currency: str = "XAG"
    ) -> tuple[str, str]:
        name = f"studio-{secrets.token_hex(4)}"
        credential = self.run(
            partners.create_partner(
                self.store,
                name,
                self.clock.now_ms(),
                ip_allow=ip_allow,
                payment_currency=self.settings.currency_registry[payment_currency],
            )
        )
        return credential.username, credential.password

    def create_player(
        self, balance: str = "100.00", currency: str = "XAG", daily_limit: str | None = None
    ) -> str:
        wallet_currency = self.settings.currency_registry[currency]
        return self.run(
            players.create_player(
                self.store,
                wallet_currency,
                self.clock.now_ms(),
                balance_minor=parse_operator_amount(balance, wallet_currency),
                daily_withdraw_limit_minor=None
                if daily_limit is None
                else parse_operator_amount(daily_limit, wallet_currency),
            )
        )

    def create_session(self, player_id: str, partner: str) -> str:
        issued = self.run(
            sessions.create_session(
                self.store,
                player_id=player_id,
                partner=partner,
                now_ms=self.clock.now_ms(),
                idle_timeout_s=self.settings.session_idle_timeout_s,
                lifetime_s=self.settings.session_lifetime_s,
            )
        )
        return issued.token

    def block(self, player_id: str, blocked: bool = True) -> None:
        self.run(players.set_blocked(self.store, player_id, blocked))

    def player(self, player_id: str) -> dict[str, Any]:
        currencies = {c.code: c for c in self.settings.currencies}
        return self.run(players.show_player(self.store, currencies, player_id))

    def players(self, player_ids: list[str]) -> list[dict[str, Any]]:
        """Several players read in one ``run`` (a ``run`` costs more than the queries)."""
        currencies = {c.code: c for c in self.settings.currencies}

        async def views() -> list[dict[str, Any]]:
            return [await players.show_player(self.store, currencies, p) for p in player_ids]

        return self.run(views())

    def reconcile(self) -> reconcile.ReconciliationReport:
        return self.run(reconcile.reconcile(self.store))


class LiveServer:
    """The real application under uvicorn, in a thread, on a loopback port."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, clock=clock),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            # Our own trusted-proxy rule decides about X-Forwarded-For (qwallet.api.auth).
            proxy_headers=False,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)


class Wallet:
    """A partner with one player and a live session, calling the real server over HTTP."""

    def __init__(
        self, server: LiveServer, username: str, password: str, player_id: str, token: str
    ):
        self.client = httpx.Client(base_url=server.url, auth=(username, password), timeout=30)
        self.username, self.password = username, password
        self.player_id, self.token = player_id, token

    def call(self, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = self.client.post(f"/wallet/{endpoint}", json=body)
        return response.status_code, response.json()

    def raw(self, endpoint: str, content: bytes, **kwargs: Any) -> httpx.Response:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return self.client.post(f"/wallet/{endpoint}", content=content, headers=headers, **kwargs)

    def money(
        self,
        endpoint: str,
        mm_id: str,
        amount: str | None = None,
        currency: str = "XAG",
        token: str | None = None,
        **extra: Any,
    ) -> tuple[int, dict[str, Any]]:
        """A money call; ``amount`` is the exact JSON number text to send (e.g. ``"230.00"``)."""
        body: dict[str, Any] = {"token": token or self.token, "mmTransactionId": mm_id, **extra}
        text = json.dumps(body)
        if amount is not None:
            amount_json = f'{{"amount": {amount}, "currencyCode": {json.dumps(currency)}}}'
            text = text[:-1] + f', "amount": {amount_json}}}'
        response = self.raw(endpoint, text.encode())
        return response.status_code, response.json()

    def balance(self) -> str:
        status, body = self.call("getBalance", {"token": self.token})
        assert status == 200 and "balance" in body, body
        return str(body["balance"]["amount"])

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from fresh_database_url(backend, tmp_path_factory.mktemp(f"db-{backend}"))


@pytest.fixture(scope="module")
def clock(backend: str) -> ManualClock:
    """One clock per module and backend, so the two halves of a module stay independent."""
    return ManualClock(start_ms=time.time_ns() // 1_000_000)


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    # The concurrency scenarios fire hundreds of calls per token within a second, far above a
    # real player's rate: the limiter has its own tests (tests/reliability/test_security.py).
    return Settings(
        database_url=database_url,
        credential_cache_ttl_s=30.0,
        rate_limit_player_rps=UNLIMITED_RPS,
        rate_limit_player_burst=int(UNLIMITED_RPS),
        rate_limit_partner_rps=UNLIMITED_RPS,
        rate_limit_partner_burst=int(UNLIMITED_RPS),
    )


@pytest.fixture(scope="module")
def platform(settings: Settings, clock: ManualClock) -> Iterator[Platform]:
    helper = Platform(settings, clock)
    yield helper
    helper.close()


@pytest.fixture(scope="module")
def server(settings: Settings, clock: ManualClock, platform: Platform) -> Iterator[LiveServer]:
    live = LiveServer(settings, clock)
    live.start()
    yield live
    live.stop()


@pytest.fixture
def new_wallet(server: LiveServer, platform: Platform) -> Iterator[Any]:
    """Factory: ``new_wallet(balance="100.00")`` → a fresh partner, player and session."""
    created: list[Wallet] = []

    def make(
        balance: str = "100.00",
        currency: str = "XAG",
        daily_limit: str | None = None,
        ip_allow: list[str] | None = None,
    ) -> Wallet:
        username, password = platform.create_partner(ip_allow=ip_allow)
        player_id = platform.create_player(balance, currency, daily_limit)
        token = platform.create_session(player_id, username)
        wallet = Wallet(server, username, password, player_id, token)
        created.append(wallet)
        return wallet

    yield make
    for wallet in created:
        wallet.close()
