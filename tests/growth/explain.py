"""A ``SqlDatabase`` over a PostgreSQL store that records the plan of every query it runs."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from qwallet.store.postgres import PostgresStore
from qwallet.store.sql import Row, SqlTransaction

WATCHED = (
    "transactions",
    "transaction_keys",
    "ledger_entries",
    "payment_orders",
    "audit_log",
    "hold_resolutions",
)


_PARTITION = re.compile(r"_(default|y\d{4}m\d{2})$")


def _table_of(relation: str) -> str:
    """``transactions_y2026m05`` and ``transactions_default`` → ``transactions``."""
    return _PARTITION.sub("", relation)


@dataclass
class Plan:
    label: str
    sql: str
    plan: dict[str, Any]

    def nodes(self) -> Iterator[dict[str, Any]]:
        stack = [self.plan]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.get("Plans", []))

    def seq_scans(self, empty: frozenset[str] = frozenset()) -> list[str]:
        """The watched tables read whole: a partition (migration 0011) counts as its table,
        unless it is one of ``empty`` (a month no row falls in costs nothing to read)."""
        return [
            str(node["Relation Name"])
            for node in self.nodes()
            if node.get("Node Type") == "Seq Scan"
            and str(node.get("Relation Name")) not in empty
            and _table_of(str(node.get("Relation Name"))) in WATCHED
        ]

    def index_names(self) -> set[str]:
        """The indexes the plan reads, a partition's index named as its table's."""
        return {str(node["Index Name"]) for node in self.nodes() if "Index Name" in node}

    def text(self) -> str:
        def walk(node: dict[str, Any], depth: int) -> list[str]:
            name = node.get("Node Type", "?")
            extra = node.get("Index Name") or node.get("Relation Name") or ""
            line = f"{'  ' * depth}{name} {extra}".rstrip()
            return [line] + [x for child in node.get("Plans", []) for x in walk(child, depth + 1)]

        return "\n".join(walk(self.plan, 0))


class _Explaining:
    def __init__(self, tx: SqlTransaction, owner: ExplainingDatabase) -> None:
        self._tx, self._owner = tx, owner

    async def _explain(self, sql: str, args: tuple[object, ...]) -> None:
        head = sql.lstrip().split(None, 1)[0].upper()
        if head not in ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE"):
            return
        row = await self._tx.fetchrow("EXPLAIN (FORMAT JSON) " + sql, *args)
        assert row is not None
        document = next(iter(row.values()))
        plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        self._owner.plans.append(Plan(self._owner.label, sql, plan))

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        await self._explain(sql, args)
        return await self._tx.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        await self._explain(sql, args)
        return await self._tx.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: object) -> int:
        await self._explain(sql, args)
        return await self._tx.execute(sql, *args)


@dataclass
class ExplainingDatabase:
    store: PostgresStore
    label: str = ""
    plans: list[Plan] = field(default_factory=list)
    dialect: str = "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self.store.transaction() as tx:
            yield _Explaining(tx, self)
