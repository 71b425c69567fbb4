"""``PostgresStore``: the kit's storage on PostgreSQL, through an asyncpg connection pool.

The ``KitStore`` itself is ``_sql_store.py``, the same as ``SQLiteStore``'s (the same ``kit_``
tables, so they can live in the studio's own database, and the same semantics, one method = one
transaction); this module is its connection handling and PostgreSQL's words, its own tools where
SQLite serializes every writer:

- amounts are ``NUMERIC`` (exact, and the scale is kept: ``230.00`` comes back as ``230.00``);
- a decision locks its transaction row (``SELECT … FOR UPDATE``), so a flow and the abandoned-
  transaction recovery cannot both decide;
- workers claim due outbox entries with ``FOR UPDATE SKIP LOCKED``: any number of processes
  share the outbox without waiting on each other, and no entry is handed to two of them;
- a payment claim is ``INSERT … ON CONFLICT DO NOTHING`` then a locked read, so two concurrent
  callbacks for one cpOrderId cannot both deliver.

Everything holds at READ COMMITTED. The pool is opened on first use (or by ``await open()``),
and the tables are created then, under an advisory lock so processes starting together do not
race on ``CREATE TABLE IF NOT EXISTS``. ``asyncpg`` is imported only here: a studio on SQLite
does not need it.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from qwallet_partner._sql_store import Dialect, Row, SqlKitStore, TransactionBody, schema

__all__ = ["PostgresStore"]

_T = TypeVar("_T")

SCHEMA_LOCK_KEY = 0x6B6974_5F7363  # "kit_sc": any constant shared by every process of the kit

DIALECT = Dialect(
    lock_row=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    decimal_type="NUMERIC",
    time_type="DOUBLE PRECISION",
    integer_type="BIGINT",
    serial_key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    attempt_id_column="id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    ",
    insertion_order="id",
)


class _PostgresConnection:
    """``Connection`` on one asyncpg connection (a transaction is open on it for a write)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def fetchall(self, sql: str, *args: object) -> list[Row]:
        return [tuple(row.values()) for row in await self._connection.fetch(sql, *args)]

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        row = await self._connection.fetchrow(sql, *args)
        return None if row is None else tuple(row.values())

    async def execute(self, sql: str, *args: object) -> int:
        # asyncpg answers with the command tag, e.g. "INSERT 0 1" or "UPDATE 3": its last word
        # is the number of rows.
        status: str = await self._connection.execute(sql, *args)
        count = status.rpartition(" ")[2]
        return int(count) if count.isdigit() else 0


class PostgresStore(SqlKitStore):
    """The ``KitStore`` on PostgreSQL. ``dsn`` is a ``postgresql://`` URL.

    The store owns its pool: ``close()`` closes it. Keep the pool small — the kit makes a few
    short transactions per flow, and the outbox worker one per batch.
    """

    _dialect = DIALECT

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        command_timeout_s: float = 30.0,
    ) -> None:
        assert max_size > 0 and 0 <= min_size <= max_size
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout_s = command_timeout_s
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        """Create the pool and the tables; called on first use if not called before."""
        await self._get_pool()

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                import asyncpg

                pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    command_timeout=self._command_timeout_s,
                )
                try:
                    async with pool.acquire() as connection, connection.transaction():
                        await connection.execute(
                            "SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY
                        )
                        await connection.execute(schema(DIALECT))
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def _run(self, body: TransactionBody[_T], *, write: bool) -> _T:
        pool = await self._get_pool()
        async with pool.acquire() as connection:
            if not write:
                return await body(_PostgresConnection(connection))
            async with connection.transaction():
                return await body(_PostgresConnection(connection))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
