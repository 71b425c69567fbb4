"""The ``KitStore`` on SQL, once for every database: ``SQLiteStore`` and ``PostgresStore`` are
this adapter with their connection handling and a ``Dialect`` (a few words of SQL).

Each method is one transaction: it reads, asks the rules (``_store_rules.py``) and writes what
they decided. The statements are written once, with PostgreSQL's numbered placeholders
(``$1``); the SQLite connection rewrites them to SQLite's own (``?1``). Where the two
databases differ the dialect says how:

- **locking**: PostgreSQL locks the row a transaction reads and then changes (``FOR UPDATE``)
  and skips rows another worker holds when claiming (``FOR UPDATE SKIP LOCKED``); SQLite needs
  neither, since every write transaction starts with ``BEGIN IMMEDIATE`` and so runs alone;
- **types**: an exact decimal is ``NUMERIC`` there and its text here, a time is a double;
- **connections**: an asyncpg pool there; one ``sqlite3`` connection on a worker thread here.

A transaction body is a coroutine, so that it can wait on asyncpg; on SQLite none of its awaits
suspends (each statement completes at once), so the whole body runs to its end on the worker
thread, inside one ``BEGIN IMMEDIATE`` … ``COMMIT``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from qwallet_partner import _store_rules as rules
from qwallet_partner._store import (
    Attempt,
    ClaimResult,
    EntryState,
    Kind,
    Operation,
    OutboxEntry,
    PaymentOrder,
    TransactionRecord,
)

__all__ = ["Connection", "Dialect", "SqlKitStore", "TransactionBody", "schema"]

_T = TypeVar("_T")

Row = Sequence[Any]


class Connection(Protocol):
    """One open transaction (or, for a read, one connection) of a dialect."""

    async def fetchall(self, sql: str, *args: object) -> list[Row]: ...

    async def fetchone(self, sql: str, *args: object) -> Row | None: ...

    async def execute(self, sql: str, *args: object) -> int:
        """Run a statement; return the number of rows it changed."""
        ...


TransactionBody = Callable[[Connection], Coroutine[Any, Any, _T]]
"""What a method does inside its transaction, given the transaction's connection."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL that differs between the databases; everything else is written once."""

    lock_row: str
    """Appended to a read whose row the transaction goes on to change."""
    skip_locked: str
    """Appended to the read of due entries: rows another worker holds are not waited for."""
    decimal_type: str
    time_type: str
    integer_type: str
    serial_key: str
    """The column definition of a generated primary key."""
    attempt_id_column: str
    """``kit_outbox_attempts``' own key, if the database needs one to keep the insertion order."""
    insertion_order: str
    """The column that orders ``kit_outbox_attempts`` as they were written."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kit_transactions (
    kind TEXT NOT NULL CHECK (kind IN ('withdrawal', 'deposit')),
    mm_transaction_id TEXT NOT NULL,
    token TEXT NOT NULL,
    amount {decimal} NOT NULL,
    currency_code TEXT NOT NULL,
    description TEXT,
    state TEXT NOT NULL CHECK (state IN ('started', 'pending', 'confirmed', 'rolled_back')),
    qw_transaction_id TEXT,
    created_at {time} NOT NULL,
    updated_at {time} NOT NULL,
    PRIMARY KEY (kind, mm_transaction_id)
);
CREATE INDEX IF NOT EXISTS kit_transactions_undecided
    ON kit_transactions (updated_at) WHERE state IN ('started', 'pending');
CREATE TABLE IF NOT EXISTS kit_outbox (
    id {serial},
    kind TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('confirm', 'rollback')),
    mm_transaction_id TEXT NOT NULL,
    token TEXT NOT NULL,
    amount {decimal} NOT NULL,
    currency_code TEXT NOT NULL,
    reason TEXT,
    state TEXT NOT NULL CHECK (state IN ('due', 'delivered', 'failed', 'expired')),
    created_at {time} NOT NULL,
    first_attempt_at {time},
    next_attempt_at {time} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_at {time},
    UNIQUE (kind, mm_transaction_id),   -- one final decision per transaction
    FOREIGN KEY (kind, mm_transaction_id) REFERENCES kit_transactions (kind, mm_transaction_id)
);
CREATE INDEX IF NOT EXISTS kit_outbox_due ON kit_outbox (next_attempt_at) WHERE state = 'due';
CREATE TABLE IF NOT EXISTS kit_outbox_attempts (
    {attempt_id}entry_id {integer} NOT NULL REFERENCES kit_outbox (id),
    at {time} NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kit_outbox_attempts_entry ON kit_outbox_attempts (entry_id);
CREATE TABLE IF NOT EXISTS kit_payments (
    cp_order_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    uid TEXT NOT NULL,
    server_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    product_price TEXT NOT NULL,
    ext_params TEXT NOT NULL,
    ts_ms {integer} NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('delivering', 'delivered')),
    claimed_until {time} NOT NULL,
    received_at {time} NOT NULL,
    delivered_at {time}
);
"""


def schema(dialect: Dialect) -> str:
    """The kit's tables (prefixed ``kit_``, so they may share the studio's database), created
    only if missing: every statement is idempotent, so processes may open the store at once."""
    return _SCHEMA.format(
        decimal=dialect.decimal_type,
        time=dialect.time_type,
        integer=dialect.integer_type,
        serial=dialect.serial_key,
        attempt_id=dialect.attempt_id_column,
    )


_ENTRY_COLUMNS = (
    "id, kind, operation, mm_transaction_id, token, amount, currency_code, reason, state, "
    "created_at, first_attempt_at, next_attempt_at, attempts, last_error, finished_at"
)
_TRANSACTION_COLUMNS = (
    "kind, mm_transaction_id, token, amount, currency_code, description, state, "
    "qw_transaction_id, created_at, updated_at"
)


class SqlKitStore(ABC):
    """Every ``KitStore`` method, over the two hooks a database adapter provides:
    ``_run`` (connection handling) and ``_dialect``."""

    _dialect: Dialect

    @abstractmethod
    async def _run(self, body: TransactionBody[_T], *, write: bool) -> _T:
        """Run ``body`` in one transaction (``write``), or on one connection (a single read),
        and return what it returned; any exception rolls the transaction back."""

    @abstractmethod
    async def close(self) -> None: ...

    async def _write(self, body: TransactionBody[_T]) -> _T:
        return await self._run(body, write=True)

    async def _read(self, body: TransactionBody[_T]) -> _T:
        return await self._run(body, write=False)

    # -- withdrawals and deposits ------------------------------------------------------------

    async def start_transaction(
        self,
        kind: Kind,
        mm_transaction_id: str,
        token: str,
        amount: Decimal,
        currency_code: str,
        description: str | None,
        now: float,
    ) -> None:
        async def body(db: Connection) -> int:
            return await db.execute(
                f"INSERT INTO kit_transactions ({_TRANSACTION_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'started', NULL, $7, $7) ON CONFLICT DO NOTHING",
                kind,
                mm_transaction_id,
                token,
                amount,
                currency_code,
                description,
                now,
            )

        if await self._write(body) == 0:
            raise rules.already_exists(kind, mm_transaction_id)

    async def mark_pending(
        self, kind: Kind, mm_transaction_id: str, qw_transaction_id: str, now: float
    ) -> None:
        async def body(db: Connection) -> None:
            await db.execute(
                "UPDATE kit_transactions SET state = 'pending', qw_transaction_id = $1, "
                "updated_at = $2 WHERE kind = $3 AND mm_transaction_id = $4 AND state = 'started'",
                qw_transaction_id,
                now,
                kind,
                mm_transaction_id,
            )

        await self._write(body)

    async def decide(
        self,
        kind: Kind,
        mm_transaction_id: str,
        operation: Operation,
        reason: str | None,
        now: float,
        not_before: float | None = None,
    ) -> OutboxEntry:
        async def body(db: Connection) -> OutboxEntry:
            row = await db.fetchone(
                "SELECT state, token, amount, currency_code FROM kit_transactions "
                f"WHERE kind = $1 AND mm_transaction_id = $2{self._dialect.lock_row}",
                kind,
                mm_transaction_id,
            )
            state = None if row is None else row[0]
            if rules.decide(kind, mm_transaction_id, operation, state) == "record":
                assert row is not None
                _, token, amount, currency_code = row
                await db.execute(
                    "UPDATE kit_transactions SET state = $1, updated_at = $2 "
                    "WHERE kind = $3 AND mm_transaction_id = $4",
                    rules.decided_state(operation),
                    now,
                    kind,
                    mm_transaction_id,
                )
                await db.execute(
                    "INSERT INTO kit_outbox (kind, operation, mm_transaction_id, token, amount, "
                    "currency_code, reason, state, created_at, next_attempt_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, 'due', $8, $9)",
                    kind,
                    operation,
                    mm_transaction_id,
                    token,
                    amount,
                    currency_code,
                    reason,
                    now,
                    rules.due_at(now, not_before),
                )
            entry = await _entry_of(db, kind, mm_transaction_id)
            assert entry is not None, "every decided transaction has its entry"
            return entry

        return await self._write(body)

    async def get_transaction(self, kind: Kind, mm_transaction_id: str) -> TransactionRecord | None:
        async def body(db: Connection) -> Row | None:
            return await db.fetchone(
                f"SELECT {_TRANSACTION_COLUMNS} FROM kit_transactions "
                "WHERE kind = $1 AND mm_transaction_id = $2",
                kind,
                mm_transaction_id,
            )

        row = await self._read(body)
        return None if row is None else _transaction(row)

    async def undecided_before(self, before: float) -> list[TransactionRecord]:
        async def body(db: Connection) -> list[Row]:
            return await db.fetchall(
                f"SELECT {_TRANSACTION_COLUMNS} FROM kit_transactions "
                "WHERE state IN ('started', 'pending') AND updated_at < $1 "
                "ORDER BY updated_at LIMIT $2",
                before,
                rules.UNDECIDED_BATCH,
            )

        return [_transaction(row) for row in await self._read(body)]

    # -- the outbox --------------------------------------------------------------------------

    async def claim_due(self, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        async def body(db: Connection) -> list[OutboxEntry]:
            rows = await db.fetchall(
                "SELECT id FROM kit_outbox WHERE state = 'due' AND next_attempt_at <= $1 "
                f"ORDER BY next_attempt_at, id LIMIT $2{self._dialect.skip_locked}",
                now,
                limit,
            )
            return await _claim(db, [int(row[0]) for row in rows], now, lease_s)

        return await self._write(body)

    async def claim_entry(self, entry_id: int, now: float, lease_s: float) -> OutboxEntry | None:
        async def body(db: Connection) -> OutboxEntry | None:
            due = await db.fetchone(
                "SELECT id FROM kit_outbox WHERE id = $1 AND state = 'due' "
                f"AND next_attempt_at <= $2{self._dialect.skip_locked}",
                entry_id,
                now,
            )
            if due is None:
                return None
            (entry,) = await _claim(db, [entry_id], now, lease_s)
            return entry

        return await self._write(body)

    async def finish_attempt(
        self,
        entry_id: int,
        now: float,
        outcome: str,
        state: EntryState,
        next_attempt_at: float | None,
    ) -> None:
        finished = rules.finish_attempt(now, outcome, state, next_attempt_at)

        async def body(db: Connection) -> None:
            await db.execute(
                "INSERT INTO kit_outbox_attempts (entry_id, at, outcome) VALUES ($1, $2, $3)",
                entry_id,
                now,
                finished.outcome,
            )
            await db.execute(
                "UPDATE kit_outbox SET state = $1, next_attempt_at = COALESCE($2, "
                "next_attempt_at), last_error = $3, finished_at = $4 WHERE id = $5",
                finished.state,
                finished.next_attempt_at,
                finished.last_error,
                finished.finished_at,
                entry_id,
            )

        await self._write(body)

    async def get_entry(self, kind: Kind, mm_transaction_id: str) -> OutboxEntry | None:
        return await self._read(lambda db: _entry_of(db, kind, mm_transaction_id))

    async def attempts(self, entry_id: int) -> list[Attempt]:
        async def body(db: Connection) -> list[Row]:
            return await db.fetchall(
                "SELECT entry_id, at, outcome FROM kit_outbox_attempts WHERE entry_id = $1 "
                f"ORDER BY at, {self._dialect.insertion_order}",
                entry_id,
            )

        return [Attempt(int(entry), at, outcome) for entry, at, outcome in await self._read(body)]

    async def next_due_at(self) -> float | None:
        async def body(db: Connection) -> Row | None:
            return await db.fetchone(
                "SELECT MIN(next_attempt_at) FROM kit_outbox WHERE state = 'due'"
            )

        row = await self._read(body)
        return None if row is None or row[0] is None else float(row[0])

    # -- payment callbacks -------------------------------------------------------------------

    async def claim_payment(self, order: PaymentOrder, now: float, lease_s: float) -> ClaimResult:
        claimed_until = rules.lease_until(now, lease_s)

        async def body(db: Connection) -> ClaimResult:
            # Insert first, read second: of concurrent first callbacks exactly one inserts.
            inserted = await db.execute(
                "INSERT INTO kit_payments (cp_order_id, fingerprint, uid, server_id, product_id, "
                "product_price, ext_params, ts_ms, state, claimed_until, received_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'delivering', $9, $10) "
                "ON CONFLICT (cp_order_id) DO NOTHING",
                order.cp_order_id,
                order.fingerprint,
                order.uid,
                order.server_id,
                order.product_id,
                order.product_price,
                order.ext_params,
                order.ts_ms,
                claimed_until,
                now,
            )
            if inserted:
                return "claimed"
            row = await db.fetchone(
                "SELECT fingerprint, state, claimed_until FROM kit_payments "
                f"WHERE cp_order_id = $1{self._dialect.lock_row}",
                order.cp_order_id,
            )
            stored = None if row is None else rules.StoredPayment(row[0], row[1], float(row[2]))
            verdict = rules.payment_claim(order, stored, now)
            if verdict != "take_over":
                return verdict
            await db.execute(
                "UPDATE kit_payments SET claimed_until = $1 WHERE cp_order_id = $2",
                claimed_until,
                order.cp_order_id,
            )
            return "claimed"

        return await self._write(body)

    async def complete_payment(self, cp_order_id: str, now: float) -> None:
        async def body(db: Connection) -> None:
            await db.execute(
                "UPDATE kit_payments SET state = 'delivered', delivered_at = $1 "
                "WHERE cp_order_id = $2",
                now,
                cp_order_id,
            )

        await self._write(body)

    async def release_payment(self, cp_order_id: str) -> None:
        async def body(db: Connection) -> None:
            # A delivered order is never forgotten: only a claim still delivering is released.
            await db.execute(
                "DELETE FROM kit_payments WHERE cp_order_id = $1 AND state = 'delivering'",
                cp_order_id,
            )

        await self._write(body)

    async def is_delivered(self, cp_order_id: str) -> bool:
        async def body(db: Connection) -> Row | None:
            return await db.fetchone(
                "SELECT 1 FROM kit_payments WHERE cp_order_id = $1 AND state = 'delivered'",
                cp_order_id,
            )

        return await self._read(body) is not None


async def _claim(
    db: Connection, entry_ids: list[int], now: float, lease_s: float
) -> list[OutboxEntry]:
    """Lease the entries (locked, or alone on SQLite), count the attempt, stamp the first one;
    returned in the order of ``entry_ids``."""
    if not entry_ids:
        return []
    ids = ", ".join(f"${number}" for number in range(3, 3 + len(entry_ids)))
    await db.execute(
        "UPDATE kit_outbox SET next_attempt_at = $1, attempts = attempts + 1, "
        f"first_attempt_at = COALESCE(first_attempt_at, $2) WHERE id IN ({ids})",
        rules.lease_until(now, lease_s),
        now,
        *entry_ids,
    )
    ids = ", ".join(f"${number}" for number in range(1, 1 + len(entry_ids)))
    rows = await db.fetchall(
        f"SELECT {_ENTRY_COLUMNS} FROM kit_outbox WHERE id IN ({ids})", *entry_ids
    )
    by_id = {entry.id: entry for entry in map(_entry, rows)}
    return [by_id[entry_id] for entry_id in entry_ids]


async def _entry_of(db: Connection, kind: Kind, mm_transaction_id: str) -> OutboxEntry | None:
    row = await db.fetchone(
        f"SELECT {_ENTRY_COLUMNS} FROM kit_outbox WHERE kind = $1 AND mm_transaction_id = $2",
        kind,
        mm_transaction_id,
    )
    return None if row is None else _entry(row)


def _entry(row: Row) -> OutboxEntry:
    values = list(row)
    values[0] = int(values[0])
    values[5] = Decimal(values[5])  # NUMERIC comes as a Decimal, SQLite's exact text as str
    return OutboxEntry(*values)


def _transaction(row: Row) -> TransactionRecord:
    values = list(row)
    values[3] = Decimal(values[3])
    return TransactionRecord(*values)
