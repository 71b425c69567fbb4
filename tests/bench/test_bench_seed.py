"""The benchmark's funded wallets (``qwallet.store.bulk_load``, through ``qwallet.bench.database``)
on both databases: every wallet funded by an adjustment whose two ledger entries sum to zero,
one live session each with the derived token, and ``reconcile`` passes on the result.

The SQLite seed listed no columns and broke when ``players`` gained one (``web_generation``);
it names them now, as the PostgreSQL seed does.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from qwallet.bench import database
from qwallet.service import reconcile
from qwallet.settings import Settings
from qwallet.store import bulk_load
from qwallet.store.factory import open_store
from tests.conftest import BACKENDS, PG_URL, require_postgres

PLAYERS = 50


async def _seeded(db: database.BenchDatabase) -> tuple[bool, dict[str, int]]:
    await database.seed(db, PLAYERS, int(time.time() * 1000))
    store = await open_store(Settings(database_url=db.url, pg_pool_min=1, pg_pool_max=2))
    try:
        report = await reconcile.reconcile(store)
        async with store.transaction() as tx:
            counts = {
                table: int((await tx.fetchrow(f"SELECT COUNT(*) AS n FROM {table}"))["n"])
                for table in ("players", "adjustments", "ledger_entries", "sessions")
            }
            balance = await tx.fetchrow(
                "SELECT available_minor FROM players WHERE id = $1", bulk_load.derived_id("p", 7)
            )
            token = await tx.fetchrow(
                "SELECT player_id FROM sessions WHERE token = $1", bulk_load.derived_id("t", 7)
            )
        assert balance is not None and balance["available_minor"] == bulk_load.INITIAL_BALANCE_MINOR
        assert token is not None and token["player_id"] == bulk_load.derived_id("p", 7)
        return report.ok, counts
    finally:
        await store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_wallets_reconcile(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        db = database.BenchDatabase(f"sqlite:///{tmp_path / 'bench.db'}", "sqlite", "bench.db")
        ok, counts = asyncio.run(_seeded(db))
    else:
        require_postgres()
        db = asyncio.run(database.create_postgres(PG_URL))
        try:
            ok, counts = asyncio.run(_seeded(db))
        finally:
            asyncio.run(database.drop_postgres(PG_URL, db))
    assert ok
    assert counts == {
        "players": PLAYERS,
        "adjustments": PLAYERS,
        "ledger_entries": 2 * PLAYERS,
        "sessions": PLAYERS,
    }
