"""Read-only queries behind the console's pages; portable SQL with ``$n`` placeholders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row, SqlDatabase

PAGE_SIZE = 50
TRANSACTION_STATES = ("pending", "confirmed", "rolled_back")
KINDS = ("withdrawal", "deposit")


@dataclass
class Where:
    """A WHERE clause built from optional filters, numbering placeholders as it goes."""

    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, template: str, value: Any) -> None:
        self.args.append(value)
        self.clauses.append(template.replace("?", f"${len(self.args)}"))

    @property
    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""

    def next_placeholder(self, offset: int = 1) -> str:
        return f"${len(self.args) + offset}"


def day_start_ms(text: str) -> int:
    """``YYYY-MM-DD`` (UTC) → the epoch milliseconds at its start."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise OperatorError(f"not a date (YYYY-MM-DD): {text[:20]!r}") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


async def dashboard(db: SqlDatabase, overdue_cutoff_ms: int) -> dict[str, Any]:
    async with db.transaction() as tx:
        balances = await tx.fetch(
            "SELECT currency, COUNT(*) AS players, SUM(available_minor) AS available,"
            " SUM(held_minor) AS held, SUM(pending_in_minor) AS pending_in"
            " FROM players GROUP BY currency ORDER BY currency"
        )
        holds = await tx.fetch(
            "SELECT currency, COUNT(*) AS n, SUM(amount_minor) AS amount,"
            " SUM(CASE WHEN created_at_ms <= $1 THEN 1 ELSE 0 END) AS overdue"
            " FROM transactions WHERE state = 'pending' AND kind = 'withdrawal'"
            " GROUP BY currency ORDER BY currency",
            overdue_cutoff_ms,
        )
        deposits = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM transactions"
            " WHERE state = 'pending' AND kind = 'deposit' AND created_at_ms <= $1",
            overdue_cutoff_ms,
        )
        orders = await tx.fetch(
            "SELECT state, COUNT(*) AS n FROM payment_orders GROUP BY state ORDER BY state"
        )
        counts = await tx.fetchrow(
            "SELECT (SELECT COUNT(*) FROM players) AS players,"
            " (SELECT COUNT(*) FROM partners) AS partners,"
            " (SELECT COUNT(*) FROM transactions) AS transactions"
        )
    return {
        "balances": balances,
        "holds": holds,
        "overdue_deposits": int(deposits["n"]) if deposits else 0,
        "orders": {str(row["state"]): int(row["n"]) for row in orders},
        "counts": counts or {},
    }


async def search_players(db: SqlDatabase, query: str, page: int) -> list[Row]:
    where = Where()
    query = query.strip()
    if query:
        pattern = "%" + query.lower().replace("%", "").replace("_", "") + "%"
        where.args.extend([query, pattern])
        where.clauses.append("(id = $1 OR LOWER(nickname) LIKE $2 OR LOWER(id) LIKE $2)")
    limit, offset = where.next_placeholder(1), where.next_placeholder(2)
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT id, nickname, currency, status, available_minor, held_minor,"
            f" pending_in_minor, created_at_ms FROM players{where.sql}"
            f" ORDER BY created_at_ms DESC, id LIMIT {limit} OFFSET {offset}",
            *where.args,
            PAGE_SIZE + 1,
            page * PAGE_SIZE,
        )


async def player_activity(db: SqlDatabase, player_id: str) -> tuple[list[Row], list[Row]]:
    async with db.transaction() as tx:
        transactions = await tx.fetch(
            "SELECT t.qw_transaction_id, t.mm_transaction_id, t.kind, t.state, t.amount_minor,"
            " t.currency, t.created_at_ms, p.name AS partner"
            " FROM transactions t JOIN partners p ON p.id = t.partner_id"
            " WHERE t.player_id = $1 ORDER BY t.created_at_ms DESC LIMIT 50",
            player_id,
        )
        adjustments = await tx.fetch(
            "SELECT id, amount_minor, currency, reason, operator, created_at_ms"
            " FROM adjustments WHERE player_id = $1 ORDER BY created_at_ms DESC LIMIT 50",
            player_id,
        )
    return transactions, adjustments


@dataclass(frozen=True)
class TransactionFilter:
    partner: str = ""
    player: str = ""
    state: str = ""
    kind: str = ""
    date_from: str = ""
    date_to: str = ""
    mm_id: str = ""

    def where(self) -> Where:
        where = Where()
        if self.partner:
            where.add("p.name = ?", self.partner)
        if self.player:
            where.add("t.player_id = ?", self.player)
        if self.state:
            if self.state not in TRANSACTION_STATES:
                raise OperatorError(f"unknown state {self.state[:20]!r}")
            where.add("t.state = ?", self.state)
        if self.kind:
            if self.kind not in KINDS:
                raise OperatorError(f"unknown kind {self.kind[:20]!r}")
            where.add("t.kind = ?", self.kind)
        if self.date_from:
            where.add("t.created_at_ms >= ?", day_start_ms(self.date_from))
        if self.date_to:
            where.add("t.created_at_ms < ?", day_start_ms(self.date_to) + 86_400_000)
        if self.mm_id:
            where.add("t.mm_transaction_id = ?", self.mm_id)
        return where


async def transactions(db: SqlDatabase, filters: TransactionFilter, page: int) -> list[Row]:
    where = filters.where()
    limit, offset = where.next_placeholder(1), where.next_placeholder(2)
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT t.qw_transaction_id, t.mm_transaction_id, t.kind, t.state, t.amount_minor,"
            " t.currency, t.player_id, t.created_at_ms, t.updated_at_ms, p.name AS partner"
            f" FROM transactions t JOIN partners p ON p.id = t.partner_id{where.sql}"
            f" ORDER BY t.created_at_ms DESC, t.qw_transaction_id LIMIT {limit} OFFSET {offset}",
            *where.args,
            PAGE_SIZE + 1,
            page * PAGE_SIZE,
        )


async def transaction_detail(db: SqlDatabase, qw_transaction_id: str) -> tuple[Row, list[Row]]:
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT t.*, p.name AS partner FROM transactions t"
            " JOIN partners p ON p.id = t.partner_id WHERE t.qw_transaction_id = $1",
            qw_transaction_id,
        )
        if row is None:
            raise OperatorError(f"no transaction {qw_transaction_id}")
        entries = await tx.fetch(
            "SELECT id, phase, account, player_id, partner_id, currency, amount_minor,"
            " created_at_ms FROM ledger_entries WHERE transaction_id = $1 ORDER BY id",
            qw_transaction_id,
        )
    return row, entries


async def partner_names(db: SqlDatabase) -> list[str]:
    async with db.transaction() as tx:
        rows = await tx.fetch("SELECT name FROM partners ORDER BY name")
    return [str(row["name"]) for row in rows]


_EXISTS = {
    "player": "SELECT 1 FROM players WHERE id = $1",
    "transaction": "SELECT 1 FROM transactions WHERE qw_transaction_id = $1",
    "payment order": "SELECT 1 FROM payment_orders WHERE id = $1",
}


async def exists(db: SqlDatabase, what: str, key: str) -> bool:
    """Whether the player, transaction or payment order ``key`` exists (the pages' 404)."""
    async with db.transaction() as tx:
        return await tx.fetchrow(_EXISTS[what], key) is not None
