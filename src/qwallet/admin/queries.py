"""Read-only queries behind the console's pages; portable SQL with ``$n`` placeholders.

Lists are keyset pages (``qwallet.service.keyset``): no OFFSET, no count of history. Each
function says how its cost grows with the stored rows; ``tests/growth/test_query_plans.py``
checks the PostgreSQL plans.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any

from qwallet.domain.ids import is_platform_id
from qwallet.service.capped import capped_count
from qwallet.service.keyset import TimeCursor, next_time_cursor
from qwallet.service.orders_admin import counts_by_state
from qwallet.service.partners import OperatorError
from qwallet.service.where import Where
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

PAGE_SIZE = 50
TRANSACTION_STATES = ("pending", "confirmed", "rolled_back")
KINDS = ("withdrawal", "deposit")


def day_start_ms(text: str) -> int:
    """``YYYY-MM-DD`` (UTC) → the epoch milliseconds at its start."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise OperatorError(f"not a date (YYYY-MM-DD): {text[:20]!r}") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


async def transaction_estimate(tx: SqlTransaction, dialect: str) -> int | None:
    """About how many transactions are stored, without counting them.

    ``COUNT(*)`` reads every row (622 ms at 5 M rows, growing without end). PostgreSQL's
    ``pg_class.reltuples`` is the figure autovacuum/ANALYZE last measured (None before the first
    one); SQLite's ``MAX(rowid)`` is one index step and exact while no row is deleted (rows never
    are). Cost: constant. The dashboard labels it an estimate.
    """
    if dialect == "postgresql":
        row = await tx.fetchrow(
            "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = 'transactions'::regclass"
        )
    else:
        row = await tx.fetchrow("SELECT MAX(rowid) AS n FROM transactions")
    if row is None:
        return None
    if row["n"] is None:  # SQLite, empty table
        return 0
    value = int(row["n"])
    return None if value < 0 else value


# The dashboard's backlog counts (``capped.capped_count``): each a range of the partial index
# ``ix_transactions_pending`` in time order, the kind checked in the index, stopped after
# ``COUNT_CAP + 1`` rows. $1 is the end of the hold window.
_PENDING_HOLDS = "FROM transactions WHERE state = 'pending' AND kind = 'withdrawal'"
_OVERDUE_HOLDS = _PENDING_HOLDS + " AND created_at_ms <= $1"
_OVERDUE_DEPOSITS = (
    "FROM transactions WHERE state = 'pending' AND kind = 'deposit' AND created_at_ms <= $1"
)


async def dashboard(db: SqlDatabase, overdue_cutoff_ms: int) -> dict[str, Any]:
    """Cost: the per-currency balances (held amounts included: ``players.held_minor`` is what
    the pending withdrawals hold) and the player count grow with the number of wallets (one
    pass over ``players``); the pending holds, the holds past the window and the deposits
    past it are capped counts, at most ``COUNT_CAP + 1`` entries of ``ix_transactions_pending``
    each whatever the backlog (276 ms at a backlog of 17,000 when every pending row was read);
    order counts are capped too (``orders_admin.counts_by_state``); the transaction figure is
    an estimate (``transaction_estimate``). Nothing reads history, nothing the whole backlog.
    """
    async with db.transaction() as tx:
        balances = await tx.fetch(
            "SELECT currency, COUNT(*) AS players, SUM(available_minor) AS available,"
            " SUM(held_minor) AS held, SUM(pending_in_minor) AS pending_in"
            " FROM players GROUP BY currency ORDER BY currency"
        )
        pending = {
            "holds": await capped_count(tx, _PENDING_HOLDS, "created_at_ms"),
            "overdue_holds": await capped_count(
                tx, _OVERDUE_HOLDS, "created_at_ms", overdue_cutoff_ms
            ),
            "overdue_deposits": await capped_count(
                tx, _OVERDUE_DEPOSITS, "created_at_ms", overdue_cutoff_ms
            ),
        }
        partners = await tx.fetchrow("SELECT COUNT(*) AS n FROM partners")
        counts: dict[str, Any] = {
            # The balances pass already counted the wallets: no second pass over players.
            "players": sum(int(row["players"]) for row in balances),
            "partners": int(partners["n"]) if partners else 0,
        }
        counts["transactions"] = await transaction_estimate(tx, db.dialect)
    return {
        "balances": balances,
        "pending": pending,
        "orders": await counts_by_state(db),
        "counts": counts,
    }


MAX_SEARCH_CHARS = 200
"""Longer than any player id or nickname the console shows (nicknames hold 64 characters)."""


def _search_text(query: str) -> str:
    """The search text, stripped; refused (a clear error, never a query) when too long or
    holding control characters, which no nickname or player id the console shows contains."""
    text = query.strip()
    if len(text) > MAX_SEARCH_CHARS:
        raise OperatorError(f"a search is at most {MAX_SEARCH_CHARS} characters")
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise OperatorError("a search cannot hold control characters")
    return text


def prefix_end(prefix: str) -> str | None:
    """The least string after every string that starts with ``prefix``, in code point order
    (PostgreSQL's ``COLLATE "C"`` on UTF-8 and SQLite's BINARY compare UTF-8 bytes, which sort
    as the code points do): its last character raised by one. A last character that cannot be
    raised (U+10FFFF) is dropped and the one before it raised; None when nothing is after.

    ``key >= prefix AND key < prefix_end(prefix)`` is then exactly "starts with prefix", a
    range of an index on ``key`` whatever the characters: ``%``, ``_`` and ``\\`` are
    characters like any other here, not LIKE's wildcards (LIKE on an expression index is an
    index range only under settings neither database has by default)."""
    chars = list(prefix)
    while chars:
        point = ord(chars.pop()) + 1
        if point == 0xD800:  # the surrogates are not characters: UTF-8 has no bytes for them
            point = 0xE000
        if point <= 0x10FFFF:
            return "".join(chars) + chr(point)
    return None


def _nickname_key(dialect: str) -> str:
    """The order of a nickname search: the nickname lowered, compared by code point
    (``ix_players_nickname``, migration 0019). PostgreSQL's default collation may be a
    language's, where strings that start alike need not sort together; ``COLLATE "C"`` after
    ``LOWER`` keeps the database's case folding and compares the result's bytes."""
    return 'LOWER(nickname) COLLATE "C"' if dialect == "postgresql" else "LOWER(nickname)"


_PLAYER_COLUMNS = (
    "id, nickname, currency, status, available_minor, held_minor, pending_in_minor, created_at_ms"
)


async def search_players(db: SqlDatabase, query: str, cursor: str | None = None) -> list[Row]:
    """Up to ``PAGE_SIZE + 1`` players: without a search text the newest first after
    ``cursor`` (a ``TimeCursor``, keyset on ``ix_players_created_id``); with one, the player
    whose id is exactly the text (first page only, a primary-key lookup) and then the players
    whose nickname starts with the text, case-insensitively, by (lowered nickname, id) after
    ``cursor`` (the id of the last player shown, ``next_players_cursor``).

    Cost: a page is one index range of about a page, whatever the number of players: the
    nickname search reads ``ix_players_nickname`` from the text (or the cursor) on and stops
    after a page of rows, every one a match. Nothing reads transactions.
    """
    text = _search_text(query)
    if not text:
        return await _newest_players(db, cursor)
    key_sql = _nickname_key(db.dialect)
    async with db.transaction() as tx:
        # The database lowers the text as it lowers the nicknames in the index (SQLite folds
        # ASCII only, PostgreSQL by its locale): Python's str.lower could disagree.
        lowered = await tx.fetchrow("SELECT LOWER($1) AS k", text)
        assert lowered is not None
        prefix = str(lowered["k"])
        exact: list[Row] = []
        where = Where()
        if cursor is None:
            exact = await tx.fetch(f"SELECT {_PLAYER_COLUMNS} FROM players WHERE id = $1", text)
        else:
            after = await tx.fetchrow(
                f"SELECT {key_sql} AS k, id FROM players WHERE id = $1", cursor[:MAX_SEARCH_CHARS]
            )
            if after is None:
                raise OperatorError(f"not a page cursor: {cursor[:40]!r}")
            where.args.extend([after["k"], after["id"]])
            where.clauses.append(f"{key_sql} >= $1 AND ({key_sql} > $1 OR id > $2)")
        where.add(f"{key_sql} >= ?", prefix)
        end = prefix_end(prefix)
        if end is not None:
            where.add(f"{key_sql} < ?", end)
        # The exact id is shown first on the first page: never again among the nicknames.
        where.add("id <> ?", text)
        limit = where.next_placeholder(1)
        matches = await tx.fetch(
            f"SELECT {_PLAYER_COLUMNS} FROM players{where.sql}"
            f" ORDER BY {key_sql}, id LIMIT {limit}",
            *where.args,
            PAGE_SIZE + 1 - len(exact),
        )
    return exact + matches


async def _newest_players(db: SqlDatabase, cursor: str | None) -> list[Row]:
    where = Where()
    after = TimeCursor.parse(cursor)
    if after is not None:
        where.clauses.append(after.where("created_at_ms", "id", 1))
        where.args.extend([after.at_ms, after.key])
    limit = where.next_placeholder(1)
    async with db.transaction() as tx:
        return await tx.fetch(
            f"SELECT {_PLAYER_COLUMNS} FROM players{where.sql}"
            f" ORDER BY created_at_ms DESC, id DESC LIMIT {limit}",
            *where.args,
            PAGE_SIZE + 1,
        )


def next_players_cursor(rows: list[Row], query: str) -> str | None:
    """The ``after`` of the next page of ``search_players(query)`` (None on the last page): a
    ``TimeCursor`` for the newest-first list, the last player's id for a search."""
    if not query.strip():
        return next_cursor(rows, "id")
    if len(rows) <= PAGE_SIZE:
        return None
    return str(rows[PAGE_SIZE - 1]["id"])


async def player_activity(db: SqlDatabase, player_id: str) -> tuple[list[Row], list[Row]]:
    """The player's newest 50 transactions and adjustments: ``ix_transactions_player`` and
    ``ix_adjustments_player``, so the cost is the 50 rows whatever the history."""
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

    def where(self, partner_ids: list[int] | None = None) -> Where:
        """The filters as SQL, over ``transactions t`` and, with an mmTransactionId, its key
        ``transaction_keys k`` (``KEY_JOIN``). ``partner_ids`` (every partner's id) is used when
        an mmTransactionId is given without a partner, so the lookup is one range of the key's
        primary key per partner instead of a scan."""
        where = Where()
        if self.partner:
            # A scalar subquery, not a join: the partner id becomes an index bound.
            where.add("t.partner_id = (SELECT id FROM partners WHERE name = ?)", self.partner)
        if self.player:
            where.add("t.player_id = ?", self.player)
        if self.state:
            if self.state not in TRANSACTION_STATES:
                raise OperatorError(f"unknown state {self.state[:20]!r}")
            # A literal, not a parameter (it is one of TRANSACTION_STATES): a generic plan of
            # ``state = $n`` could not use the partial index of the pending rows
            # (``ix_transactions_pending``), whichever state is asked for.
            where.clauses.append(f"t.state = '{self.state}'")
        if self.kind:
            if self.kind not in KINDS:
                raise OperatorError(f"unknown kind {self.kind[:20]!r}")
            where.add("t.kind = ?", self.kind)
        if self.date_from:
            where.add("t.created_at_ms >= ?", day_start_ms(self.date_from))
        if self.date_to:
            where.add("t.created_at_ms < ?", day_start_ms(self.date_to) + 86_400_000)
        if self.mm_id:
            # The key's primary key (partner_id, mm_transaction_id, kind) is the one index on
            # these columns: at most two keys (both kinds) per partner.
            where.add("k.mm_transaction_id = ?", self.mm_id)
            if self.partner:
                where.add("k.partner_id = (SELECT id FROM partners WHERE name = ?)", self.partner)
            else:
                ids = partner_ids or [0]
                first = len(where.args) + 1
                where.args.extend(ids)
                marks = ", ".join(f"${first + i}" for i in range(len(ids)))
                where.clauses.append(f"k.partner_id IN ({marks})")
        return where

    @property
    def joins(self) -> str:
        """The key join the mmTransactionId filter needs, else nothing."""
        return KEY_JOIN if self.mm_id else ""


# A key leads to its live row by the partition key too, so on PostgreSQL one partition is
# probed; an archived transaction's key has no live row and is not listed (the console lists
# stored rows; docs/operations.md, "Archiving").
KEY_JOIN = (
    " JOIN transaction_keys k ON k.qw_transaction_id = t.qw_transaction_id"
    " AND k.created_at_ms = t.created_at_ms"
)


async def transactions(
    db: SqlDatabase, filters: TransactionFilter, cursor: str | None = None
) -> list[Row]:
    """Newest first, ``PAGE_SIZE + 1`` rows after ``cursor`` (``queries.next_cursor``).

    Cost of a page, by filter (every one an index range, none a function of stored rows):
    none or a date range: ``ix_transactions_created``, the page's rows; player:
    ``ix_transactions_player``; pending: ``ix_transactions_pending``, at most the pending
    backlog; confirmed or rolled back: the time index, skipping the rows of other states (the
    pending backlog and, for rolled back, the confirmed rows in between: one in five rows is
    rolled back in the bench mix); partner: the partner's ``(partner_id, created_at_ms)``
    index; mmTransactionId: the primary key of ``transaction_keys``, at most two keys per
    partner, then one primary-key lookup of ``transactions`` each; kind alone: the time index,
    skipping the other kind's rows (half of them on average).
    """
    after = TimeCursor.parse(cursor)
    if after is not None and not is_platform_id(after.key):
        # Its key is compared with qw_transaction_id, a uuid column on PostgreSQL.
        raise OperatorError(f"not a page cursor: {str(cursor)[:40]!r}")
    async with db.transaction() as tx:
        partner_ids = None
        if filters.mm_id and not filters.partner:
            partner_ids = [int(row["id"]) for row in await tx.fetch("SELECT id FROM partners")]
        where = filters.where(partner_ids)
        if after is not None:
            where.clauses.append(
                after.where("t.created_at_ms", "t.qw_transaction_id", len(where.args) + 1)
            )
            where.args.extend([after.at_ms, after.key])
        limit = where.next_placeholder(1)
        return await tx.fetch(
            "SELECT t.qw_transaction_id, t.mm_transaction_id, t.kind, t.state, t.amount_minor,"
            " t.currency, t.player_id, t.created_at_ms, t.updated_at_ms, p.name AS partner"
            f" FROM transactions t{filters.joins} JOIN partners p ON p.id = t.partner_id"
            f"{where.sql}"
            f" ORDER BY t.created_at_ms DESC, t.qw_transaction_id DESC LIMIT {limit}",
            *where.args,
            PAGE_SIZE + 1,
        )


def next_cursor(rows: list[Row], key_field: str, time_field: str = "created_at_ms") -> str | None:
    """The ``after`` of the next page of a time-ordered list (None on the last page)."""
    return next_time_cursor(rows, PAGE_SIZE, time_field, key_field)


async def transaction_detail(db: SqlDatabase, qw_transaction_id: str) -> tuple[Row, list[Row]]:
    if not is_platform_id(qw_transaction_id):
        raise OperatorError(f"no transaction {qw_transaction_id[:60]}")
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
    """Whether the player, transaction or payment order ``key`` exists (the pages' 404).

    A transaction id that is not a UUID exists nowhere: it is not sent to a uuid column
    (PostgreSQL, migration 0014), which would refuse it with an error instead of a 404."""
    if what == "transaction" and not is_platform_id(key):
        return False
    async with db.transaction() as tx:
        return await tx.fetchrow(_EXISTS[what], key) is not None


async def transaction_partner_id(db: SqlDatabase, qw_transaction_id: str) -> int | None:
    """The partner of one transaction (its primary key: one index lookup), None if unknown."""
    if not is_platform_id(qw_transaction_id):
        return None
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT partner_id FROM transactions WHERE qw_transaction_id = $1", qw_transaction_id
        )
    return None if row is None else int(row["partner_id"])
