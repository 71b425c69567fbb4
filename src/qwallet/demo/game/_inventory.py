"""The demo game's own records: what each player owns, the real-money orders it issued, and
bonus claims. One SQLite file in the data directory, beside the kit's.

Every real-money order is recorded (player, pack, price, currency) before its purchase message
goes to the game client: the payment callback delivers only orders found here, issued to the
callback's player, and a callback naming any other cpOrderId grants nothing.

Every grant has a natural key — ``shop:<mmTransactionId>`` for an XAG purchase, ``pack:<cpOrderId>``
for a paid pack — so granting the same thing twice (a callback delivered again after a crash)
adds nothing. The same write-thread pattern as the kit's ``SQLiteStore``: blocking calls run in
a worker thread under one lock, each write in ``BEGIN IMMEDIATE … COMMIT``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

__all__ = ["AlreadyOwnedError", "Grant", "InventoryStore", "NotIssuedError", "Order"]

_T = TypeVar("_T")

Source = Literal["shop", "pack"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_grants (
    grant_id TEXT PRIMARY KEY,          -- shop:<mmTransactionId> | pack:<cpOrderId>
    player_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    source TEXT NOT NULL CHECK (source IN ('shop', 'pack')),
    reference TEXT NOT NULL,
    granted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS demo_grants_player ON demo_grants (player_id, granted_at);
CREATE TABLE IF NOT EXISTS demo_orders (
    cp_order_id TEXT PRIMARY KEY,
    player_id TEXT NOT NULL,
    pack_id TEXT NOT NULL,
    price TEXT NOT NULL,
    created_at REAL NOT NULL,
    delivered_at REAL,
    currency_code TEXT              -- NULL only on orders issued before it was recorded
);
CREATE INDEX IF NOT EXISTS demo_orders_player ON demo_orders (player_id, created_at);
CREATE TABLE IF NOT EXISTS demo_bonus_claims (
    mm_transaction_id TEXT PRIMARY KEY,
    player_id TEXT NOT NULL,
    claimed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS demo_bonus_player ON demo_bonus_claims (player_id, claimed_at);
"""


class AlreadyOwnedError(Exception):
    """A unique item the player already has."""


class NotIssuedError(Exception):
    """A cpOrderId this game did not issue (or issued to another player or for another pack)."""


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: str
    player_id: str
    item_id: str
    quantity: int
    source: Source
    reference: str
    granted_at: float


@dataclass(frozen=True, slots=True)
class Order:
    cp_order_id: str
    player_id: str
    pack_id: str
    price: str
    created_at: float
    delivered_at: float | None
    currency_code: str | None


_ORDER_COLUMNS = "cp_order_id, player_id, pack_id, price, created_at, delivered_at, currency_code"


class InventoryStore:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(demo_orders)")}
        if "currency_code" not in columns:  # a game.db from before orders had a currency
            self._db.execute("ALTER TABLE demo_orders ADD COLUMN currency_code TEXT")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def _run(self, fn: Callable[[], _T]) -> _T:
        def locked() -> _T:
            with self._lock:
                return fn()

        return await asyncio.shield(asyncio.to_thread(locked))

    # -- grants ------------------------------------------------------------------------------

    async def grant(
        self,
        grant_id: str,
        player_id: str,
        item_id: str,
        quantity: int,
        source: Source,
        reference: str,
        now: float,
        *,
        unique: bool = False,
    ) -> bool:
        """Record a grant; False if ``grant_id`` was already granted (nothing changes).

        With ``unique``, raises ``AlreadyOwnedError`` if the player already owns ``item_id``.
        """

        def run() -> bool:
            with self._write() as db:
                if db.execute(
                    "SELECT 1 FROM demo_grants WHERE grant_id = ?", (grant_id,)
                ).fetchone():
                    return False
                if (
                    unique
                    and db.execute(
                        "SELECT 1 FROM demo_grants WHERE player_id = ? AND item_id = ?",
                        (player_id, item_id),
                    ).fetchone()
                ):
                    raise AlreadyOwnedError(item_id)
                db.execute(
                    "INSERT INTO demo_grants (grant_id, player_id, item_id, quantity, source, "
                    "reference, granted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (grant_id, player_id, item_id, quantity, source, reference, now),
                )
                return True

        return await self._run(run)

    async def owns(self, player_id: str, item_id: str) -> bool:
        def run() -> bool:
            row = self._db.execute(
                "SELECT 1 FROM demo_grants WHERE player_id = ? AND item_id = ?",
                (player_id, item_id),
            ).fetchone()
            return row is not None

        return await self._run(run)

    async def grants(self, player_id: str, limit: int = 200) -> list[Grant]:
        """The player's grants, newest first."""

        def run() -> list[Grant]:
            rows = self._db.execute(
                "SELECT grant_id, player_id, item_id, quantity, source, reference, granted_at "
                "FROM demo_grants WHERE player_id = ? ORDER BY granted_at DESC, rowid DESC "
                "LIMIT ?",
                (player_id, limit),
            ).fetchall()
            return [Grant(*row) for row in rows]

        return await self._run(run)

    async def totals(self, player_id: str) -> dict[str, int]:
        """item_id → quantity owned (over every grant, not just the latest ones)."""

        def run() -> dict[str, int]:
            rows = self._db.execute(
                "SELECT item_id, SUM(quantity) FROM demo_grants WHERE player_id = ? "
                "GROUP BY item_id",
                (player_id,),
            ).fetchall()
            return {item_id: int(total) for item_id, total in rows}

        return await self._run(run)

    # -- real-money orders -------------------------------------------------------------------

    async def create_order(
        self,
        cp_order_id: str,
        player_id: str,
        pack_id: str,
        price: str,
        currency_code: str,
        now: float,
    ) -> None:
        """Record an issued order (committed before its purchase message is handed out)."""

        def run() -> None:
            with self._write() as db:
                db.execute(
                    "INSERT INTO demo_orders (cp_order_id, player_id, pack_id, price, "
                    "currency_code, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (cp_order_id, player_id, pack_id, price, currency_code, now),
                )

        await self._run(run)

    async def get_order(self, cp_order_id: str) -> Order | None:
        def run() -> Order | None:
            row = self._db.execute(
                f"SELECT {_ORDER_COLUMNS} FROM demo_orders WHERE cp_order_id = ?",
                (cp_order_id,),
            ).fetchone()
            return None if row is None else Order(*row)

        return await self._run(run)

    async def deliver_order(
        self,
        cp_order_id: str,
        player_id: str,
        pack_id: str,
        item_id: str,
        quantity: int,
        now: float,
    ) -> bool:
        """Grant a paid pack and mark its order delivered, in one transaction; idempotent.

        Only an order issued here, to ``player_id`` for ``pack_id``, is delivered; any other
        raises ``NotIssuedError`` and changes nothing (a valid signature says the platform sent
        the callback, not that this game sold that order to that player).
        """

        def run() -> bool:
            grant_id = f"pack:{cp_order_id}"
            with self._write() as db:
                if db.execute(
                    "SELECT 1 FROM demo_grants WHERE grant_id = ?", (grant_id,)
                ).fetchone():
                    return False
                updated = db.execute(
                    "UPDATE demo_orders SET delivered_at = ? "
                    "WHERE cp_order_id = ? AND player_id = ? AND pack_id = ?",
                    (now, cp_order_id, player_id, pack_id),
                ).rowcount
                if updated != 1:
                    raise NotIssuedError(cp_order_id)
                db.execute(
                    "INSERT INTO demo_grants (grant_id, player_id, item_id, quantity, source, "
                    "reference, granted_at) VALUES (?, ?, ?, ?, 'pack', ?, ?)",
                    (grant_id, player_id, item_id, quantity, cp_order_id, now),
                )
                return True

        return await self._run(run)

    async def orders(self, player_id: str, limit: int = 20) -> list[Order]:
        def run() -> list[Order]:
            rows = self._db.execute(
                f"SELECT {_ORDER_COLUMNS} FROM demo_orders WHERE player_id = ? "
                "ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (player_id, limit),
            ).fetchall()
            return [Order(*row) for row in rows]

        return await self._run(run)

    # -- bonus -------------------------------------------------------------------------------

    async def last_bonus_at(self, player_id: str) -> float | None:
        def run() -> float | None:
            row = self._db.execute(
                "SELECT MAX(claimed_at) FROM demo_bonus_claims WHERE player_id = ?", (player_id,)
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._run(run)

    async def record_bonus(self, mm_transaction_id: str, player_id: str, now: float) -> None:
        def run() -> None:
            with self._write() as db:
                db.execute(
                    "INSERT INTO demo_bonus_claims (mm_transaction_id, player_id, claimed_at) "
                    "VALUES (?, ?, ?)",
                    (mm_transaction_id, player_id, now),
                )

        await self._run(run)

    async def close(self) -> None:
        await self._run(self._db.close)


def _granted(db: sqlite3.Connection, grant_id: str) -> bool:
    return (
        db.execute("SELECT 1 FROM demo_grants WHERE grant_id = ?", (grant_id,)).fetchone()
        is not None
    )
