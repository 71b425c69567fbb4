"""``SQLiteStore``: the kit's default storage, one SQLite file through the stdlib ``sqlite3``.

The ``KitStore`` itself is ``_sql_store.py``; this module is its connection handling and
SQLite's words. Durability first: WAL with ``synchronous=FULL`` so a commit survives power loss,
and every write transaction starts with ``BEGIN IMMEDIATE`` so two processes on the same file
serialize instead of failing half-way (which is also why no statement needs a row lock). The
blocking calls run in a worker thread (``asyncio.to_thread``) under one lock, since a
``sqlite3`` connection must not be used by two threads at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import threading
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

from qwallet_partner._sql_store import Dialect, Row, SqlKitStore, TransactionBody, schema

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

DIALECT = Dialect(
    lock_row="",
    skip_locked="",
    decimal_type="TEXT",  # the exact decimal text, never a float
    time_type="REAL",
    integer_type="INTEGER",
    serial_key="INTEGER PRIMARY KEY AUTOINCREMENT",
    attempt_id_column="",  # every SQLite row has its rowid, in insertion order
    insertion_order="rowid",
)

_PLACEHOLDER = re.compile(r"\$(\d+)")


class _SQLiteConnection:
    """``Connection`` on the store's ``sqlite3`` connection: every call completes at once."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _cursor(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        # SQLite has no exact decimal type: an amount is stored as its text.
        params = tuple(str(arg) if isinstance(arg, Decimal) else arg for arg in args)
        return self._db.execute(_PLACEHOLDER.sub(r"?\1", sql), params)

    async def fetchall(self, sql: str, *args: object) -> list[Row]:
        return list(self._cursor(sql, args).fetchall())

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        row: Row | None = self._cursor(sql, args).fetchone()
        return row

    async def execute(self, sql: str, *args: object) -> int:
        return self._cursor(sql, args).rowcount


class SQLiteStore(SqlKitStore):
    """The ``KitStore`` on one SQLite file; tables are prefixed ``kit_`` so the file may be
    shared with the studio's own tables."""

    _dialect = DIALECT

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(schema(DIALECT))
        self._connection = _SQLiteConnection(self._db)

    async def _run(self, body: TransactionBody[_T], *, write: bool) -> _T:
        def locked() -> _T:
            with self._lock:
                if not write:
                    return _complete(body(self._connection))
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = _complete(body(self._connection))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result

        # Shielded: if the caller is cancelled, the thread still finishes (and commits or
        # rolls back) its transaction instead of leaving the connection mid-way.
        return await asyncio.shield(asyncio.to_thread(locked))

    async def close(self) -> None:
        def closing() -> None:
            with self._lock:
                self._db.close()

        await asyncio.shield(asyncio.to_thread(closing))


def _complete(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a transaction body to its end, here and now, on the worker thread.

    Its awaits are this module's statements, which never suspend, so one ``send`` finishes it.
    Anything that would suspend (a sleep, a lock, another database) has no place inside a
    SQLite transaction that holds the file's write lock: it is refused, and rolled back.
    """
    try:
        coroutine.send(None)
    except StopIteration as finished:
        result: _T = finished.value
        return result
    coroutine.close()
    raise RuntimeError("a SQLite transaction body waited on something other than its statements")
