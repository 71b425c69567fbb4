"""The benchmark's database: create, seed in bulk, verify, drop.

Seeding writes exactly what ``qwallet players create --balance …`` and ``qwallet sessions create``
would, only in bulk: per player one ``players`` row, one initial ``adjustments`` row with its two
ledger entries (operator → available), and one live session. The bulk SQL is the store's
(``qwallet.store.bulk_load``: only the store writes money). Identifiers are derived from the
player's index (``md5('p' || i)::uuid``), so the load generator can compute every token without
reading them back (``loadgen.token_for``).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from qwallet.service import partners, reconcile
from qwallet.settings import Settings
from qwallet.store import bulk_load, migrate
from qwallet.store.factory import open_store
from qwallet.store.postgres import asyncpg_dsn

PARTNER = "bench"
INITIAL_BALANCE_MINOR = bulk_load.INITIAL_BALANCE_MINOR


@dataclass
class BenchDatabase:
    url: str
    backend: str  # "postgresql" | "sqlite"
    name: str
    partner_id: int = 0
    username: str = PARTNER
    password: str = ""
    players: int = 0
    seed_s: float = 0.0
    settings: dict[str, str] = field(default_factory=dict)


_uuid = bulk_load.derived_id


def admin_url_for(admin_url: str, database: str) -> str:
    base, _, _ = asyncpg_dsn(admin_url).rpartition("/")
    return f"{base}/{database}"


async def create_postgres(admin_url: str) -> BenchDatabase:
    name = f"qwallet_bench_{secrets.token_hex(5)}"
    connection = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return BenchDatabase(admin_url_for(admin_url, name), "postgresql", name)


async def drop_postgres(admin_url: str, database: BenchDatabase) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _create_partner(database: BenchDatabase, now_ms: int) -> None:
    store = await open_store(Settings(database_url=database.url, pg_pool_min=1, pg_pool_max=2))
    try:
        credential = await partners.create_partner(store, PARTNER, now_ms)
        async with store.transaction() as tx:
            row = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", PARTNER)
        assert row is not None
    finally:
        await store.close()
    database.password = credential.password
    database.partner_id = int(row["id"])


async def seed(database: BenchDatabase, players: int, now_ms: int) -> None:
    """Migrate, create the bench partner, and seed ``players`` funded wallets with sessions."""
    await asyncio.to_thread(migrate.upgrade, database.url)  # Alembic runs its own loop
    await _create_partner(database, now_ms)
    database.players = players
    if database.backend == "sqlite":
        _seed_sqlite(database, players, now_ms)
        return
    connection = await asyncpg.connect(asyncpg_dsn(database.url), timeout=10)
    try:
        await bulk_load.seed_wallets_postgres(connection, players, database.partner_id, now_ms)
        for setting in ("synchronous_commit", "fsync", "shared_buffers", "max_connections"):
            database.settings[setting] = str(await connection.fetchval(f"SHOW {setting}"))
        database.settings["server_version"] = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def sqlite_file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _seed_sqlite(database: BenchDatabase, players: int, now_ms: int) -> None:
    connection = sqlite3.connect(sqlite_file(database.url))
    try:
        bulk_load.seed_wallets_sqlite(connection, players, database.partner_id, now_ms)
        for pragma in ("journal_mode", "synchronous"):
            database.settings[pragma] = str(connection.execute(f"PRAGMA {pragma}").fetchone()[0])
        database.settings["server_version"] = sqlite3.sqlite_version
    finally:
        connection.close()


# -- correctness ---------------------------------------------------------------------------


@dataclass
class Verdict:
    """Correctness of one run: a run with any problem is void."""

    acknowledged: int = 0
    missing: int = 0
    wrong_state: int = 0
    ledger_imbalance: int = 0
    negative_balances: int = 0
    reconcile_ok: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.reconcile_ok is not False


async def verify(
    database: BenchDatabase,
    acked: list[tuple[str, str, str]],
    tag: str,
    *,
    full_reconcile: bool,
) -> Verdict:
    """Every acknowledged withdrawal present once in its acknowledged state; invariants hold."""
    verdict = Verdict(acknowledged=len(acked))
    store = await open_store(Settings(database_url=database.url, pg_pool_min=1, pg_pool_max=2))
    try:
        async with store.transaction() as tx:
            rows = await tx.fetch(
                # The partner's keys (the primary key's partner range), each row by its key.
                "SELECT t.mm_transaction_id, t.qw_transaction_id, t.state"
                " FROM transaction_keys k JOIN transactions t"
                " ON t.qw_transaction_id = k.qw_transaction_id"
                " AND t.created_at_ms = k.created_at_ms"
                " WHERE k.partner_id = $1 AND k.kind = 'withdrawal'"
                " AND k.mm_transaction_id LIKE $2",
                database.partner_id,
                tag + "%",
            )
            imbalance = await tx.fetch(
                "SELECT currency, SUM(amount_minor) AS total FROM ledger_entries"
                " GROUP BY currency HAVING SUM(amount_minor) <> 0"
            )
            negative = await tx.fetchrow(
                "SELECT COUNT(*) AS n FROM players WHERE available_minor < 0"
                " OR held_minor < 0 OR pending_in_minor < 0"
            )
        stored: dict[str, tuple[str, str]] = {
            str(r["mm_transaction_id"]): (str(r["qw_transaction_id"]), str(r["state"]))
            for r in rows
        }
        for mm_id, qw_id, state in acked:
            found = stored.get(mm_id)
            if found is None or found[0] != qw_id:
                verdict.missing += 1
            elif found[1] != state:
                verdict.wrong_state += 1
        verdict.ledger_imbalance = len(imbalance)
        verdict.negative_balances = int(negative["n"]) if negative else 0
        if full_reconcile:
            report = await reconcile.reconcile(store)
            verdict.reconcile_ok = report.ok
            if not report.ok:
                verdict.problems.append(f"reconcile: {_short(report.as_json())}")
    finally:
        await store.close()
    if verdict.missing:
        verdict.problems.append(f"{verdict.missing} acknowledged transactions missing")
    if verdict.wrong_state:
        verdict.problems.append(f"{verdict.wrong_state} acknowledged transactions in wrong state")
    if verdict.ledger_imbalance:
        verdict.problems.append("ledger does not sum to zero")
    if verdict.negative_balances:
        verdict.problems.append(f"{verdict.negative_balances} negative balances")
    return verdict


def _short(payload: dict[str, Any]) -> str:
    return str({k: v for k, v in payload.items() if v})[:500]


async def deadlocks(database: BenchDatabase) -> int:
    if database.backend != "postgresql":
        return 0
    connection = await asyncpg.connect(asyncpg_dsn(database.url), timeout=10)
    try:
        value = await connection.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return int(value or 0)


__all__ = [
    "BenchDatabase",
    "Verdict",
    "create_postgres",
    "deadlocks",
    "drop_postgres",
    "seed",
    "verify",
]
