"""The small SQL interface the operator-side code (CLI, operator API, console) is written against.

Statements use PostgreSQL's numbered placeholders (``$1``); the SQLite adapter rewrites them to
SQLite's equivalent (``?1``), so each query is written once for both databases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]

_PLACEHOLDER = re.compile(r"\$(\d+)")


def to_sqlite_placeholders(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


class StatementTimeoutError(Exception):
    """A statement ran past the store's bound and its connection was closed.

    The server rolls the transaction back, or finishes a commit that was already under way on
    its own (no cancel request is sent: see ``store/postgres.py``). A caller that can split its
    work, as the reconciliation's batches can, retries a smaller piece; any other caller
    answers as for a lost connection.
    """


class SqlTransaction(Protocol):
    async def fetch(self, sql: str, *args: object) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: object) -> Row | None: ...

    async def execute(self, sql: str, *args: object) -> int:
        """Run a statement; return the number of rows it changed."""
        ...


class SqlDatabase(Protocol):
    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[SqlTransaction]: ...


async def fetch_all(db: SqlDatabase, sql: str, *args: object) -> list[Row]:
    async with db.transaction() as tx:
        return await tx.fetch(sql, *args)


async def fetch_one(db: SqlDatabase, sql: str, *args: object) -> Row | None:
    async with db.transaction() as tx:
        return await tx.fetchrow(sql, *args)


__all__ = [
    "Row",
    "SqlDatabase",
    "SqlTransaction",
    "StatementTimeoutError",
    "fetch_all",
    "fetch_one",
    "to_sqlite_placeholders",
]
