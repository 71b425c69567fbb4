"""Bulk loads of synthetic data for the benchmark (``qwallet bench``; nothing of the runtime
imports this module): funded wallets with live sessions (``seed_wallets_postgres``,
``seed_wallets_sqlite``), and a history of N completed transactions (``preload``, PostgreSQL).
They write money (ledger entries, balances) without the storage port's per-call functions, which
is why they live in ``qwallet.store``, the one package that writes money.

Cost, as measured by ``qwallet bench`` on a shared 2-core machine (docs/benchmarks.md): the
preload is CPU-bound in the server, 20,000,000 transactions in 392 s (about 51,000/s on two
connections), then 453 s to build the dropped indexes again and 31 s of VACUUM ANALYZE; it needs
``BYTES_PER_TRANSACTION_ESTIMATE`` of disk per transaction plus ``DISK_MARGIN_BYTES`` (about
51 GB at 20 M; ``check_disk`` refuses a load that would not fit). The wallet seed is one
statement per table in one transaction: 100,000 wallets in 2.2 s. Both skip the foreign-key
triggers when the user may (``replica`` role): the rows are consistent by construction and
``qwallet reconcile`` checks them after.

The preload (``preload``): N completed transactions in bulk SQL on PostgreSQL.

What it writes is what the ``wallet_v1_*`` functions would have written for the same calls, only
set-based: per transaction one ``transactions`` row (final state) and four ``ledger_entries``
(the ``begin`` pair and the ``confirm`` or ``rollback`` pair, accounts as in
``wallet_v1_apply_movement``), and each wallet's ``available_minor`` moved by what its confirmed
transactions moved. ``qwallet reconcile`` therefore passes on the result.

The mix: 70 % withdrawals and 30 % deposits, one in five rolled back, the rest confirmed; spread
over every seeded wallet (a multiplicative hash of the index) and over ``partners`` in turn;
timestamps evenly over ``span_days`` ending one hour before ``now_ms``, so that none is inside the
hold resolver's window. Plus one card-paid payment order per ten transactions (delivered or
declined: nothing for the delivery worker), so the orders list grows with the history too.

Chunks of ``CHUNK`` transactions, each one statement in its own transaction: progress can be
shown and Ctrl-C is honoured between chunks (the database is dropped anyway). Identifiers are
derived from the index (``md5('q' || i)``), as the seed does, and cast to whatever type the
schema gives the id columns (``text`` today).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from hashlib import md5
from typing import Protocol

import asyncpg

from qwallet.domain.sessions import utc_day
from qwallet.store.postgres import asyncpg_dsn

CHUNK = 500_000
CONNECTIONS = 2
DAY_MS = 86_400_000
DEFAULT_SPAN_DAYS = 180
ORDERS_PER_TRANSACTION = 0.1
BYTES_PER_TRANSACTION_ESTIMATE = 2_600
"""Disk per preloaded transaction, generously: tables, indexes, one tenth of an order (about
1,700 bytes measured on the current schema) plus the free space the load's updates leave."""
DISK_MARGIN_BYTES = 3 * 1024**3
"""On top: WAL kept until the next checkpoint (``max_wal_size``) and the VACUUM that follows."""
HASH_MULTIPLIER = 2_654_435_761  # Knuth's multiplicative hash: spreads i over the wallets

INITIAL_BALANCE_MINOR = 100_000_000  # 1,000,000.00 XAG: far more than any run withdraws

Progress = Callable[[int, int], None]
"""(transactions written, of how many)."""


class BenchDatabase(Protocol):
    """The database a bulk load writes to (``qwallet.bench.database.BenchDatabase``)."""

    @property
    def url(self) -> str: ...

    @property
    def players(self) -> int:
        """How many wallets were seeded (ids ``md5('p' || i)`` for i in 1..players)."""
        ...


@dataclass(frozen=True)
class DiskCheck:
    needed_bytes: int
    free_bytes: int | None
    """Free bytes where PostgreSQL keeps its data, None if that directory is not visible here."""
    directory: str

    @property
    def ok(self) -> bool:
        return self.free_bytes is None or self.free_bytes >= self.needed_bytes

    def describe(self) -> str:
        needed = f"{self.needed_bytes / 1024**3:.1f} GB"
        if self.free_bytes is None:
            return f"needs about {needed} of disk ({self.directory} is not visible from here)"
        free = f"{self.free_bytes / 1024**3:.1f} GB"
        return f"needs about {needed} of disk; {free} free in {self.directory}"


def disk_needed_bytes(stored: int) -> int:
    return stored * BYTES_PER_TRANSACTION_ESTIMATE + DISK_MARGIN_BYTES


async def check_disk(admin_url: str, stored: int) -> DiskCheck:
    """How much the preload needs against what the file system of PostgreSQL's data directory
    has free (the server is on this machine in every supported setup; if the directory cannot be
    read here the check says so and lets the run go on)."""
    connection = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
    try:
        try:
            directory = str(await connection.fetchval("SHOW data_directory"))
        except asyncpg.exceptions.InsufficientPrivilegeError:
            directory = "the PostgreSQL data directory"
    finally:
        await connection.close()
    free: int | None = None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(directory).free
    return DiskCheck(disk_needed_bytes(stored), free, directory)


async def _id_cast(connection: asyncpg.Connection, table: str, column: str) -> str:
    kind = await connection.fetchval(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
        table,
        column,
    )
    return "::uuid" if kind == "uuid" else "::uuid::text"


# One chunk: the transactions and their ledger entries in one statement (data-modifying CTEs),
# so a chunk is all there or not at all. No ORDER BY: the rows come out of generate_series in
# order, and a sort would only cost time.
# The leading comment names the statement in pg_stat_activity, whose copy of a query stops at
# track_activity_query_size (1 kB by default): both INSERTs come after that.
CHUNK_MARK = "qwallet bench preload chunk"
_CHUNK_SQL = """-- qwallet bench preload chunk
WITH src AS (
    SELECT i,
           md5('q' || i){tx_id} AS qw_id,
           ($3::integer[])[1 + i % cardinality($3::integer[])] AS partner_id,
           CASE WHEN i % 10 < 3 THEN 'deposit' ELSE 'withdrawal' END AS kind,
           'pre' || lpad(i::text, 10, '0') AS mm_id,
           md5('p' || (1 + (i * {multiplier}) % $4)){player_id} AS player_id,
           1 + (i * 7919) % 10000 AS amount,
           CASE WHEN (i / 10) % 5 = 0 THEN 'rolled_back' ELSE 'confirmed' END AS state,
           $5::bigint + (i * $6::bigint) AS created_at_ms
      FROM generate_series($1::bigint, $2::bigint) AS i
), legs(kind, state, phase, account, sign, ord) AS (
    VALUES ('withdrawal', 'confirmed', 'begin', 'available', -1, 1),
           ('withdrawal', 'confirmed', 'begin', 'held', 1, 2),
           ('withdrawal', 'confirmed', 'confirm', 'held', -1, 3),
           ('withdrawal', 'confirmed', 'confirm', 'partner', 1, 4),
           ('withdrawal', 'rolled_back', 'begin', 'available', -1, 1),
           ('withdrawal', 'rolled_back', 'begin', 'held', 1, 2),
           ('withdrawal', 'rolled_back', 'rollback', 'held', -1, 3),
           ('withdrawal', 'rolled_back', 'rollback', 'available', 1, 4),
           ('deposit', 'confirmed', 'begin', 'partner', -1, 1),
           ('deposit', 'confirmed', 'begin', 'pending_in', 1, 2),
           ('deposit', 'confirmed', 'confirm', 'pending_in', -1, 3),
           ('deposit', 'confirmed', 'confirm', 'available', 1, 4),
           ('deposit', 'rolled_back', 'begin', 'partner', -1, 1),
           ('deposit', 'rolled_back', 'begin', 'pending_in', 1, 2),
           ('deposit', 'rolled_back', 'rollback', 'pending_in', -1, 3),
           ('deposit', 'rolled_back', 'rollback', 'partner', 1, 4)
), written AS (
    INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id, player_id,
        amount_minor, currency, state, description, rollback_reason, begin_balance_minor,
        final_balance_minor, created_at_ms, updated_at_ms)
    SELECT qw_id, partner_id, kind, mm_id, player_id, amount, 'XAG', state, NULL,
           CASE WHEN state = 'rolled_back' THEN 'preloaded' END, $7::bigint, $7::bigint,
           created_at_ms, created_at_ms + 1500
      FROM src
), keys AS (
    -- The idempotency key of every transaction (migration 0011), as the wallet functions write it.
    INSERT INTO transaction_keys (partner_id, mm_transaction_id, kind, qw_transaction_id,
        created_at_ms)
    SELECT partner_id, mm_id, kind, qw_id, created_at_ms FROM src
), entries AS (
    INSERT INTO ledger_entries (transaction_id, phase, account, player_id, partner_id, currency,
        amount_minor, created_at_ms)
    SELECT s.qw_id, l.phase, l.account,
           CASE WHEN l.account <> 'partner' THEN s.player_id END,
           CASE WHEN l.account = 'partner' THEN s.partner_id END,
           'XAG', l.sign * s.amount,
           s.created_at_ms + CASE WHEN l.phase = 'begin' THEN 0 ELSE 1500 END
      FROM src s JOIN legs l ON l.kind = s.kind AND l.state = s.state
)
INSERT INTO bench_preload_moves (player_id, amount)
SELECT player_id,
       SUM(CASE WHEN state <> 'confirmed' THEN 0
                WHEN kind = 'deposit' THEN amount ELSE -amount END)
  FROM src GROUP BY player_id
"""

# What each chunk moved per wallet goes to a scratch table; the wallets' balances are updated
# once at the end (per chunk, every wallet would be updated once per chunk, and two chunks at
# once would wait on each other's row locks).
_MOVES_TABLE = """
CREATE UNLOGGED TABLE bench_preload_moves AS
SELECT md5('p'){player_id} AS player_id, 0::bigint AS amount WITH NO DATA
"""
_BALANCES_SQL = """
UPDATE players p
   SET available_minor = p.available_minor + moved.amount
  FROM (SELECT player_id, SUM(amount) AS amount FROM bench_preload_moves GROUP BY player_id) moved
 WHERE p.id = moved.player_id AND moved.amount <> 0
"""

_ORDERS_SQL = """
INSERT INTO payment_orders (id, partner_id, player_id, cp_order_id, server_id, product_id,
    product_name, product_desc, product_number, product_price, amount_minor, currency, ext_params,
    state, method, provider_reference, qw_transaction_id, delivery_attempts, next_delivery_at_ms,
    created_at_ms, updated_at_ms, paid_at_ms, delivered_at_ms)
SELECT md5('o' || i){order_id}, ($3::integer[])[1 + i % cardinality($3::integer[])],
       md5('p' || (1 + (i * {multiplier}) % $4)){player_id}, 'pre' || lpad(i::text, 10, '0'),
       's1', 'gems', 'Gems', NULL, 1, '1.00', 100, 'XAG', '',
       CASE WHEN i % 10 = 0 THEN 'declined' ELSE 'delivered' END, 'sandbox_card',
       'preloaded:' || i, NULL, CASE WHEN i % 10 = 0 THEN 0 ELSE 1 END, NULL,
       $5::bigint + i * $6::bigint, $5::bigint + i * $6::bigint + 3000,
       CASE WHEN i % 10 = 0 THEN NULL ELSE $5::bigint + i * $6::bigint + 2000 END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE $5::bigint + i * $6::bigint + 3000 END
  FROM generate_series($1::bigint, $2::bigint) AS i ORDER BY i
"""

PRELOADED_TABLES = (
    "transactions",
    "transaction_keys",
    "ledger_entries",
    "players",
    "payment_orders",
)
REBUILT_TABLES = ("transactions", "transaction_keys", "ledger_entries")
"""Their indexes are dropped for the load and built again after it (a sorted build instead of
N random B-tree inserts: the difference between minutes and an hour at 20 M). The indexes then
come out compact, as after a REINDEX; grown by inserts they would be larger (see the report)."""

_INDEXES = """
SELECT c.relname AS table_name, i.relname AS index_name, k.conname,
       pg_get_indexdef(x.indexrelid) AS index_def, pg_get_constraintdef(k.oid) AS constraint_def
  FROM pg_index x
  JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_class i ON i.oid = x.indexrelid
  LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = x.indrelid
 WHERE c.relname = ANY($1::text[]) AND c.relnamespace = current_schema()::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.oid)
 ORDER BY c.relname, i.relname
"""


@dataclass
class PreloadResult:
    transactions: int
    orders: int
    elapsed_s: float
    vacuum_s: float
    index_s: float = 0.0
    """Time to build the dropped indexes again (0 when they were kept during the load)."""
    rebuilt: list[str] = field(default_factory=list)
    """The indexes dropped for the load and built after it."""


async def _drop_indexes(
    connection: asyncpg.Connection,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Drop the indexes (and the primary-key / unique constraints behind them) of
    ``REBUILT_TABLES`` that no foreign key needs; return their names and how to restore them."""
    rows = await connection.fetch(_INDEXES, list(REBUILT_TABLES))
    names: list[str] = []
    restore: list[tuple[str, str]] = []
    for row in rows:
        table, index = row["table_name"], row["index_name"]
        if row["conname"] is not None:
            await connection.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{row["conname"]}"')
            restore.append(
                (
                    str(table),
                    f'ALTER TABLE "{table}" ADD CONSTRAINT "{row["conname"]}"'
                    f" {row['constraint_def']}",
                )
            )
        else:
            await connection.execute(f'DROP INDEX "{index}"')
            # A partitioned table's index reads "ON ONLY t": built that way it would cover no
            # partition, so it is built on the table and every partition.
            restore.append((str(table), str(row["index_def"]).replace(" ON ONLY ", " ON ", 1)))
        names.append(str(index))
    return names, restore


def mm_id(index: int) -> str:
    """The ``mmTransactionId`` of preloaded transaction ``index`` (1-based)."""
    return f"pre{index:010d}"


async def _connect(database: BenchDatabase) -> asyncpg.Connection:
    connection = await asyncpg.connect(asyncpg_dsn(database.url), timeout=10)
    # Foreign-key triggers off while loading (consistent by construction; reconcile checks).
    with contextlib.suppress(asyncpg.exceptions.InsufficientPrivilegeError):
        await connection.execute("SET session_replication_role = replica")
    # A sort of a few GB per index at 20 M rows; the session's own memory, not the server's.
    await connection.execute("SET maintenance_work_mem = '1GB'")
    return connection


Job = Callable[[asyncpg.Connection], Awaitable[None]]


async def _in_parallel(connections: list[asyncpg.Connection], jobs: list[Job]) -> None:
    """Run ``jobs`` in order, each on whichever connection is free (one job per connection)."""
    queue = list(reversed(jobs))

    async def worker(connection: asyncpg.Connection) -> None:
        while queue:
            await queue.pop()(connection)

    await asyncio.gather(*(worker(c) for c in connections))


async def preload(
    database: BenchDatabase,
    stored: int,
    partner_ids: list[int],
    now_ms: int,
    *,
    span_days: int = DEFAULT_SPAN_DAYS,
    rebuild_indexes: bool = True,
    budget_s: float | None = None,
    progress: Progress | None = None,
) -> PreloadResult:
    """Write ``stored`` completed transactions (and a tenth as many orders), then VACUUM ANALYZE
    the tables: hint bits and the visibility map are set once here, not by the measured load.

    Chunks, index builds and the VACUUMs run on ``CONNECTIONS`` connections at once (the inserts
    are CPU-bound in the server: one connection uses one core). With ``budget_s``, no chunk is
    started after that many seconds: the result says how many transactions were written (a
    prefix of the indexes, so every id stays derivable)."""
    started = time.monotonic()
    span_ms = span_days * DAY_MS
    start_ms = now_ms - 3_600_000 - span_ms
    step_ms = max(1, span_ms // max(1, stored))
    orders = int(stored * ORDERS_PER_TRANSACTION)
    order_step_ms = max(1, span_ms // max(1, orders))
    connections = [await _connect(database) for _ in range(CONNECTIONS)]
    try:
        first = connections[0]
        casts = {
            "tx_id": await _id_cast(first, "transactions", "qw_transaction_id"),
            "player_id": await _id_cast(first, "players", "id"),
            "order_id": await _id_cast(first, "payment_orders", "id"),
            "multiplier": str(HASH_MULTIPLIER),
        }
        chunk_sql = _CHUNK_SQL.format(**casts)
        orders_sql = _ORDERS_SQL.format(**casts)
        await first.execute(_MOVES_TABLE.format(**casts))
        # The months the preload spans (partitioned tables, migration 0011), so no row lands in
        # a default partition.
        await first.execute(
            "SELECT qwallet_ensure_partitions($1, $2)", start_ms, start_ms + step_ms * stored + 1500
        )
        rebuilt: list[str] = []
        restore: list[tuple[str, str]] = []
        if rebuild_indexes:
            rebuilt, restore = await _drop_indexes(first)
        written = [0]

        deadline = None if budget_s is None else time.monotonic() + budget_s

        def chunk(low: int, high: int) -> Job:
            async def run(connection: asyncpg.Connection) -> None:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                await connection.execute(
                    chunk_sql,
                    low,
                    high,
                    partner_ids,
                    database.players,
                    start_ms,
                    step_ms,
                    INITIAL_BALANCE_MINOR,
                )
                order_low = int((low - 1) * ORDERS_PER_TRANSACTION)
                order_high = int(high * ORDERS_PER_TRANSACTION)
                if order_high > order_low:
                    await connection.execute(
                        orders_sql,
                        order_low + 1,
                        order_high,
                        partner_ids,
                        database.players,
                        start_ms,
                        order_step_ms,
                    )
                written[0] += high - low + 1
                if progress is not None:
                    progress(written[0], stored)

            return run

        await _in_parallel(
            connections,
            [chunk(low, min(stored, low + CHUNK - 1)) for low in range(1, stored + 1, CHUNK)],
        )
        await first.execute(_BALANCES_SQL)
        await first.execute("DROP TABLE bench_preload_moves")
        loaded = time.monotonic()

        def statement(sql: str) -> Job:
            async def run(connection: asyncpg.Connection) -> None:
                await connection.execute(sql)

            return run

        # The two tables' builds interleaved: a primary key or unique constraint takes its table's
        # exclusive lock, so two builds on one table would often wait for each other.
        ledger = [sql for table, sql in restore if table == "ledger_entries"]
        others = [sql for table, sql in restore if table != "ledger_entries"]
        ordered = [sql for pair in itertools.zip_longest(ledger, others) for sql in pair if sql]
        await _in_parallel(connections, [statement(sql) for sql in ordered])
        indexed = time.monotonic()
        await _in_parallel(
            connections,
            [statement(f"VACUUM (ANALYZE) {table}") for table in PRELOADED_TABLES],
        )
        with contextlib.suppress(asyncpg.exceptions.InsufficientPrivilegeError):
            await first.execute("CHECKPOINT")
    finally:
        for connection in connections:
            await connection.close()
    return PreloadResult(
        written[0],
        int(written[0] * ORDERS_PER_TRANSACTION),
        loaded - started,
        time.monotonic() - indexed,
        index_s=indexed - loaded,
        rebuilt=rebuilt,
    )


# -- funded wallets --------------------------------------------------------------------------

SESSION_IDLE_MS = 24 * 3600 * 1000
SESSION_LIFETIME_MS = 2 * 24 * 3600 * 1000


def derived_id(prefix: str, index: int) -> str:
    """The id of row ``index`` (1-based) of a kind: ``md5(prefix || index)`` as a UUID, the same
    in Python and in SQL, so the load generator computes every token without reading it back."""
    return str(uuid.UUID(md5(f"{prefix}{index}".encode(), usedforsecurity=False).hexdigest()))


_PG_SEED = (
    """
    CREATE TEMP TABLE bench_seed ON COMMIT DROP AS
    SELECT i, md5('p' || i)::uuid::text AS player_id, md5('a' || i)::uuid::text AS adjustment_id,
           md5('t' || i)::uuid::text AS token
      FROM generate_series(1, $1::integer) AS i
    """,
    """
    INSERT INTO players (id, nickname, currency, language, status, available_minor, held_minor,
        pending_in_minor, daily_withdraw_limit_minor, limit_day, day_withdrawn_minor,
        created_at_ms)
    SELECT player_id, 'bench-' || i, 'XAG', 'en', 'active', $1, 0, 0, NULL, $2, 0, $3
      FROM bench_seed ORDER BY player_id
    """,
    """
    INSERT INTO adjustments (id, player_id, amount_minor, currency, reason, operator,
        created_at_ms)
    SELECT adjustment_id, player_id, $1, 'XAG', 'initial balance', 'bench', $2
      FROM bench_seed ORDER BY adjustment_id
    """,
    """
    INSERT INTO ledger_entries (adjustment_id, phase, account, player_id, currency, amount_minor,
        created_at_ms)
    SELECT adjustment_id, 'adjust', leg.account,
           CASE WHEN leg.account = 'available' THEN player_id END,
           'XAG', leg.sign * $1::bigint, $2
      FROM bench_seed
     CROSS JOIN (VALUES ('operator', -1), ('available', 1)) AS leg(account, sign)
     ORDER BY player_id, leg.sign
    """,
    """
    INSERT INTO sessions (token, player_id, partner_id, game_code, created_at_ms,
        last_seen_at_ms, idle_timeout_ms, expires_at_ms)
    SELECT token, player_id, $1, 'bench', $2, $2, $3, $4 FROM bench_seed ORDER BY token
    """,
)
"""Bulk seed in one transaction, each table in its primary key's order (sequential B-tree
inserts). Foreign-key triggers are skipped for it (``replica`` role, when
the user may): the rows are consistent by construction and ``reconcile`` checks them after."""


async def seed_wallets_postgres(
    connection: asyncpg.Connection, players: int, partner_id: int, now_ms: int
) -> None:
    """Per player one ``players`` row funded with ``INITIAL_BALANCE_MINOR``, its ``adjustments``
    row and two ledger entries (operator → available), and one live session with ``partner_id``:
    what ``qwallet players create --balance …`` and ``qwallet sessions create`` write, in bulk.
    Then ANALYZE."""
    async with connection.transaction():
        with contextlib.suppress(asyncpg.exceptions.InsufficientPrivilegeError):
            async with connection.transaction():  # a savepoint: harmless if refused
                await connection.execute("SET LOCAL session_replication_role = replica")
        await connection.execute(_PG_SEED[0], players)
        await connection.execute(_PG_SEED[1], INITIAL_BALANCE_MINOR, utc_day(now_ms), now_ms)
        await connection.execute(_PG_SEED[2], INITIAL_BALANCE_MINOR, now_ms)
        await connection.execute(_PG_SEED[3], INITIAL_BALANCE_MINOR, now_ms)
        await connection.execute(
            _PG_SEED[4],
            partner_id,
            now_ms,
            SESSION_IDLE_MS,
            now_ms + SESSION_LIFETIME_MS,
        )
    await connection.execute("ANALYZE")


def seed_wallets_sqlite(
    connection: sqlite3.Connection, players: int, partner_id: int, now_ms: int
) -> None:
    """``seed_wallets_postgres`` on SQLite: the same rows, then ANALYZE."""
    with connection:
        day = utc_day(now_ms)
        connection.executemany(
            # Columns named, as on PostgreSQL: the table has gained columns with defaults since.
            "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
            " held_minor, pending_in_minor, daily_withdraw_limit_minor, limit_day,"
            " day_withdrawn_minor, created_at_ms)"
            " VALUES (?, ?, 'XAG', 'en', 'active', ?, 0, 0, NULL, ?, 0, ?)",
            (
                (derived_id("p", i), f"bench-{i}", INITIAL_BALANCE_MINOR, day, now_ms)
                for i in range(1, players + 1)
            ),
        )
        connection.executemany(
            "INSERT INTO adjustments (id, player_id, amount_minor, currency, reason,"
            " operator, created_at_ms) VALUES (?, ?, ?, 'XAG', 'initial balance', 'bench', ?)",
            (
                (derived_id("a", i), derived_id("p", i), INITIAL_BALANCE_MINOR, now_ms)
                for i in range(1, players + 1)
            ),
        )
        connection.executemany(
            "INSERT INTO ledger_entries (adjustment_id, phase, account, player_id, currency,"
            " amount_minor, created_at_ms) VALUES (?, 'adjust', ?, ?, 'XAG', ?, ?)",
            (
                row
                for i in range(1, players + 1)
                for row in (
                    (derived_id("a", i), "operator", None, -INITIAL_BALANCE_MINOR, now_ms),
                    (
                        derived_id("a", i),
                        "available",
                        derived_id("p", i),
                        INITIAL_BALANCE_MINOR,
                        now_ms,
                    ),
                )
            ),
        )
        connection.executemany(
            "INSERT INTO sessions (token, player_id, partner_id, game_code, created_at_ms,"
            " last_seen_at_ms, idle_timeout_ms, expires_at_ms)"
            " VALUES (?, ?, ?, 'bench', ?, ?, ?, ?)",
            (
                (
                    derived_id("t", i),
                    derived_id("p", i),
                    partner_id,
                    now_ms,
                    now_ms,
                    SESSION_IDLE_MS,
                    now_ms + SESSION_LIFETIME_MS,
                )
                for i in range(1, players + 1)
            ),
        )
    connection.execute("ANALYZE")


__all__ = [
    "INITIAL_BALANCE_MINOR",
    "BenchDatabase",
    "DiskCheck",
    "PreloadResult",
    "check_disk",
    "derived_id",
    "disk_needed_bytes",
    "mm_id",
    "preload",
    "seed_wallets_postgres",
    "seed_wallets_sqlite",
]
