"""Where a run's database time goes: a ``SqlDatabase`` that sums the wall time of each statement.

The growth benchmark runs the incremental reconcile through it, so that a per-entry cost that
grows with history can be traced to the statements that grow (docs/benchmarks.md, "Growth").
A statement is named after the module constant that holds it (``_RANGE_ENTRY_COUNTS``), found
by the text before the constant's first ``{`` (a constant filled in with ``str.format`` keeps
that prefix); a statement written inline is named by its first words, its string literals
shown as ``'…'``. The time of a call is
the caller's wall time from sending it to having its rows (database work plus the round trip);
``BEGIN`` and ``COMMIT`` are not statements here and are not counted.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType

from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

INLINE_NAME_CHARS = 60
_STATEMENT_WORDS = frozenset({"SELECT", "WITH", "INSERT", "UPDATE", "DELETE"})
_LITERAL = re.compile(r"'(?:[^']|'')*'")


@dataclass
class StatementTime:
    name: str
    calls: int = 0
    ms: float = 0.0


def statement_names(module: ModuleType) -> dict[str, str]:
    """The leading text of each SQL constant of ``module`` (``_NAME = "SELECT ..."``) → its name."""
    found: dict[str, str] = {}
    for name, value in vars(module).items():
        if not (isinstance(value, str) and name.startswith("_") and name.lstrip("_").isupper()):
            continue
        head = value.split("{", 1)[0].strip()
        first = head.split(None, 1)[0].upper() if head else ""
        if first in _STATEMENT_WORDS:
            found[head] = name
    return found


class TimedDatabase:
    """``db`` with every statement's wall time added to ``times`` under its name."""

    def __init__(self, db: SqlDatabase, names: Mapping[str, str]) -> None:
        self._db = db
        # Longest prefix first: a constant whose text begins another's keeps its own name.
        self._names = sorted(names.items(), key=lambda item: -len(item[0]))
        self.times: dict[str, StatementTime] = {}
        self.dialect = db.dialect

    def name_of(self, sql: str) -> str:
        text = sql.strip()
        for head, name in self._names:
            if text.startswith(head):
                return name
        # Literals out, so that one statement with other values is one row (the snapshot id of
        # every SET TRANSACTION SNAPSHOT differs).
        words = _LITERAL.sub("'…'", " ".join(text.split()))
        return words if len(words) <= INLINE_NAME_CHARS else words[: INLINE_NAME_CHARS - 1] + "…"

    def add(self, sql: str, seconds: float) -> None:
        name = self.name_of(sql)
        entry = self.times.setdefault(name, StatementTime(name))
        entry.calls += 1
        entry.ms += seconds * 1000

    def by_time(self) -> list[StatementTime]:
        return sorted(self.times.values(), key=lambda entry: -entry.ms)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._db.transaction() as tx:
            yield _TimedTransaction(tx, self)


class _TimedTransaction:
    def __init__(self, tx: SqlTransaction, owner: TimedDatabase) -> None:
        self._tx, self._owner = tx, owner

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        started = time.perf_counter()
        try:
            return await self._tx.fetch(sql, *args)
        finally:
            self._owner.add(sql, time.perf_counter() - started)

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        started = time.perf_counter()
        try:
            return await self._tx.fetchrow(sql, *args)
        finally:
            self._owner.add(sql, time.perf_counter() - started)

    async def execute(self, sql: str, *args: object) -> int:
        started = time.perf_counter()
        try:
            return await self._tx.execute(sql, *args)
        finally:
            self._owner.add(sql, time.perf_counter() - started)


__all__ = ["StatementTime", "TimedDatabase", "statement_names"]
