"""Fixtures for the hold resolver: a real kit Query Withdrawal endpoint on loopback, and holds
made through the real Wallet API whose kit records say what the partner decided."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from qwallet.partner import QueryWithdrawalApp, SQLiteStore
from qwallet.resolver import HoldResolver, Outcome
from qwallet.service import holds
from qwallet.settings import Settings
from tests.conftest import Platform, Wallet
from tests.partner.conftest import serve

QUERY_AUTH = ("qwallet", "query-pass-" + secrets.token_hex(4))
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    # The in-process worker is off: each test runs passes itself.
    return Settings(
        database_url=database_url,
        credential_cache_ttl_s=30.0,
        hold_resolver_interval_s=0,
        hold_query_timeout_s=1.0,
    )


@pytest.fixture(scope="module")
def kit_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kit") / "kit.db"


@pytest.fixture(scope="module")
def query_url(kit_db: Path) -> Iterator[str]:
    """The partner kit's Query Withdrawal endpoint, answering from the kit's records."""
    store = SQLiteStore(kit_db)
    with serve(QueryWithdrawalApp(store, [QUERY_AUTH])) as base:
        yield base + "/query"
    asyncio.run(store.close())


@dataclass
class Hold:
    wallet: Wallet
    mm_id: str
    qw_id: str


class Holds:
    """Makes withdrawals through the Wallet API and records the partner's decision in the kit."""

    def __init__(self, platform: Platform, new_wallet: Any, kit_db: Path, query_url: str):
        self.platform, self.new_wallet, self.kit_db = platform, new_wallet, kit_db
        self.query_url = query_url

    def make(
        self,
        kit_state: str | None,
        *,
        amount: str = "10.00",
        query_url: str | None = None,
        auth: tuple[str, str] = QUERY_AUTH,
    ) -> Hold:
        wallet = self.new_wallet(balance="100.00")
        mm_id = f"w-{secrets.token_hex(6)}"
        status, body = wallet.money("withdraw", mm_id, amount)
        assert status == 200 and "qwTransactionId" in body, body
        qw_id = body["qwTransactionId"]
        self.configure(wallet.username, query_url or self.query_url, auth)
        if kit_state is not None:
            asyncio.run(self._seed(kit_state, mm_id, qw_id, wallet.token, Decimal(amount)))
        return Hold(wallet, mm_id, qw_id)

    def configure(self, partner: str, url: str | None, auth: tuple[str, str]) -> None:
        async def update() -> None:
            async with self.platform.store.transaction() as tx:
                await tx.execute(
                    "UPDATE partners SET query_url = $1, query_username = $2,"
                    " query_password = $3 WHERE name = $4",
                    url,
                    auth[0],
                    auth[1],
                    partner,
                )

        self.platform.run(update())

    async def _seed(self, state: str, mm_id: str, qw_id: str, token: str, amount: Decimal) -> None:
        store = SQLiteStore(self.kit_db)
        try:
            await store.start_transaction("withdrawal", mm_id, token, amount, "XAG", None, 1.0)
            if state == "started":
                return
            await store.mark_pending("withdrawal", mm_id, qw_id, 2.0)
            if state in ("confirmed", "rolled_back"):
                operation = "confirm" if state == "confirmed" else "rollback"
                await store.decide("withdrawal", mm_id, operation, None, 3.0)
        finally:
            await store.close()

    # -- platform-side views ---------------------------------------------------------------

    def state(self, qw_id: str) -> str:
        row = self.fetchrow("SELECT state FROM transactions WHERE qw_transaction_id = $1", qw_id)
        assert row is not None
        return str(row["state"])

    def entries(self, qw_id: str) -> list[tuple[str, str, int]]:
        rows = self.fetch(
            "SELECT phase, account, amount_minor FROM ledger_entries WHERE transaction_id = $1"
            " ORDER BY id",
            qw_id,
        )
        return [(r["phase"], r["account"], int(r["amount_minor"])) for r in rows]

    def resolutions(self, qw_id: str) -> list[dict[str, Any]]:
        rows = self.platform.run(
            holds.resolutions(self.platform.store, qw_transaction_id=qw_id, limit=100)
        )
        return [dict(row) for row in reversed(rows)]

    def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            async with self.platform.store.transaction() as tx:
                return [dict(r) for r in await tx.fetch(sql, *args)]

        return self.platform.run(go())

    def fetchrow(self, sql: str, *args: object) -> dict[str, Any] | None:
        rows = self.fetch(sql, *args)
        return rows[0] if rows else None


@pytest.fixture
def holds_(platform: Platform, new_wallet: Any, kit_db: Path, query_url: str) -> Holds:
    return Holds(platform, new_wallet, kit_db, query_url)


def run_resolver(platform: Platform, settings: Settings, **kwargs: Any) -> list[Outcome]:
    async def go() -> list[Outcome]:
        async with HoldResolver(platform.store, settings, platform.clock, **kwargs) as resolver:
            return await resolver.run_once()

    return platform.run(go())


def past_window(platform: Platform, settings: Settings) -> None:
    platform.clock.advance(settings.hold_window_s * 1000 + 1000)


def outcome_for(outcomes: list[Outcome], qw_id: str) -> Outcome | None:
    found = [o for o in outcomes if o.qw_transaction_id == qw_id]
    assert len(found) <= 1
    return found[0] if found else None
