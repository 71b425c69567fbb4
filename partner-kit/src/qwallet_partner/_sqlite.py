"""``SQLiteStore``: the kit's default storage, one SQLite file through the stdlib ``sqlite3``.

Durability first: WAL with ``synchronous=FULL`` so a commit survives power loss, and every
write transaction starts with ``BEGIN IMMEDIATE`` so two processes on the same file serialize
instead of failing half-way. The blocking calls run in a worker thread (``asyncio.to_thread``)
under one lock, since a ``sqlite3`` connection must not be used by two threads at once.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar, cast

from qwallet_partner._exceptions import FlowError
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

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS kit_transactions (
    kind TEXT NOT NULL CHECK (kind IN ('withdrawal', 'deposit')),
    mm_transaction_id TEXT NOT NULL,
    token TEXT NOT NULL,
    amount TEXT NOT NULL,            -- exact decimal text, never a float
    currency_code TEXT NOT NULL,
    description TEXT,
    state TEXT NOT NULL CHECK (state IN ('started', 'pending', 'confirmed', 'rolled_back')),
    qw_transaction_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, mm_transaction_id)
);
CREATE INDEX IF NOT EXISTS kit_transactions_undecided
    ON kit_transactions (updated_at) WHERE state IN ('started', 'pending');
CREATE TABLE IF NOT EXISTS kit_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('confirm', 'rollback')),
    mm_transaction_id TEXT NOT NULL,
    token TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    reason TEXT,
    state TEXT NOT NULL CHECK (state IN ('due', 'delivered', 'failed', 'expired')),
    created_at REAL NOT NULL,
    first_attempt_at REAL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_at REAL,
    UNIQUE (kind, mm_transaction_id),   -- one final decision per transaction
    FOREIGN KEY (kind, mm_transaction_id) REFERENCES kit_transactions (kind, mm_transaction_id)
);
CREATE INDEX IF NOT EXISTS kit_outbox_due ON kit_outbox (next_attempt_at) WHERE state = 'due';
CREATE TABLE IF NOT EXISTS kit_outbox_attempts (
    entry_id INTEGER NOT NULL REFERENCES kit_outbox (id),
    at REAL NOT NULL,
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
    ts_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('delivering', 'delivered')),
    claimed_until REAL NOT NULL,
    received_at REAL NOT NULL,
    delivered_at REAL
);
"""

_ENTRY_COLUMNS = (
    "id, kind, operation, mm_transaction_id, token, amount, currency_code, reason, state, "
    "created_at, first_attempt_at, next_attempt_at, attempts, last_error, finished_at"
)
_TRANSACTION_COLUMNS = (
    "kind, mm_transaction_id, token, amount, currency_code, description, state, "
    "qw_transaction_id, created_at, updated_at"
)


class SQLiteStore:
    """The ``KitStore`` on one SQLite file; tables are prefixed ``kit_`` so the file may be
    shared with the studio's own tables."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # Idempotent statements, so several processes opening the same file at once are fine.
        self._db.executescript(SCHEMA)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
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

        # Shielded: if the caller is cancelled, the thread still finishes (and commits or
        # rolls back) its transaction instead of leaving the connection mid-way.
        return await asyncio.shield(asyncio.to_thread(locked))

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
        def run() -> None:
            try:
                with self._write() as db:
                    db.execute(
                        f"INSERT INTO kit_transactions ({_TRANSACTION_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, 'started', NULL, ?, ?)",
                        (
                            kind,
                            mm_transaction_id,
                            token,
                            str(amount),
                            currency_code,
                            description,
                            now,
                            now,
                        ),
                    )
            except sqlite3.IntegrityError as exc:
                raise FlowError(f"{kind} {mm_transaction_id!r} already exists") from exc

        await self._run(run)

    async def mark_pending(
        self, kind: Kind, mm_transaction_id: str, qw_transaction_id: str, now: float
    ) -> None:
        def run() -> None:
            with self._write() as db:
                db.execute(
                    "UPDATE kit_transactions SET state = 'pending', qw_transaction_id = ?, "
                    "updated_at = ? WHERE kind = ? AND mm_transaction_id = ? AND state = 'started'",
                    (qw_transaction_id, now, kind, mm_transaction_id),
                )

        await self._run(run)

    async def decide(
        self,
        kind: Kind,
        mm_transaction_id: str,
        operation: Operation,
        reason: str | None,
        now: float,
        not_before: float | None = None,
    ) -> OutboxEntry:
        decided = "confirmed" if operation == "confirm" else "rolled_back"

        def run() -> OutboxEntry:
            with self._write() as db:
                row = db.execute(
                    "SELECT state, token, amount, currency_code FROM kit_transactions "
                    "WHERE kind = ? AND mm_transaction_id = ?",
                    (kind, mm_transaction_id),
                ).fetchone()
                if row is None:
                    raise FlowError(f"no {kind} {mm_transaction_id!r} to {operation}")
                state, token, amount, currency_code = row
                if state in ("confirmed", "rolled_back"):
                    if state != decided:
                        raise FlowError(
                            f"{kind} {mm_transaction_id!r} is already {state}; "
                            f"it cannot be {decided}"
                        )
                else:
                    db.execute(
                        "UPDATE kit_transactions SET state = ?, updated_at = ? "
                        "WHERE kind = ? AND mm_transaction_id = ?",
                        (decided, now, kind, mm_transaction_id),
                    )
                    db.execute(
                        "INSERT INTO kit_outbox (kind, operation, mm_transaction_id, token, "
                        "amount, currency_code, reason, state, created_at, next_attempt_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 'due', ?, ?)",
                        (
                            kind,
                            operation,
                            mm_transaction_id,
                            token,
                            amount,
                            currency_code,
                            reason,
                            now,
                            max(now, not_before or now),
                        ),
                    )
                entry = self._entry_where(
                    db, "kind = ? AND mm_transaction_id = ?", (kind, mm_transaction_id)
                )
                assert entry is not None
                return entry

        return await self._run(run)

    async def get_transaction(self, kind: Kind, mm_transaction_id: str) -> TransactionRecord | None:
        def run() -> TransactionRecord | None:
            row = self._db.execute(
                f"SELECT {_TRANSACTION_COLUMNS} FROM kit_transactions "
                "WHERE kind = ? AND mm_transaction_id = ?",
                (kind, mm_transaction_id),
            ).fetchone()
            return None if row is None else _transaction(row)

        return await self._run(run)

    async def undecided_before(self, before: float) -> list[TransactionRecord]:
        def run() -> list[TransactionRecord]:
            rows = self._db.execute(
                f"SELECT {_TRANSACTION_COLUMNS} FROM kit_transactions "
                "WHERE state IN ('started', 'pending') AND updated_at < ? "
                "ORDER BY updated_at LIMIT 1000",
                (before,),
            ).fetchall()
            return [_transaction(row) for row in rows]

        return await self._run(run)

    # -- the outbox --------------------------------------------------------------------------

    async def claim_due(self, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        def run() -> list[OutboxEntry]:
            with self._write() as db:
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM kit_outbox WHERE state = 'due' AND next_attempt_at <= ? "
                        "ORDER BY next_attempt_at, id LIMIT ?",
                        (now, limit),
                    )
                ]
                return [self._claim(db, entry_id, now, lease_s) for entry_id in ids]

        return await self._run(run)

    async def claim_entry(self, entry_id: int, now: float, lease_s: float) -> OutboxEntry | None:
        def run() -> OutboxEntry | None:
            with self._write() as db:
                due = db.execute(
                    "SELECT 1 FROM kit_outbox WHERE id = ? AND state = 'due' "
                    "AND next_attempt_at <= ?",
                    (entry_id, now),
                ).fetchone()
                return None if due is None else self._claim(db, entry_id, now, lease_s)

        return await self._run(run)

    def _claim(
        self, db: sqlite3.Connection, entry_id: int, now: float, lease_s: float
    ) -> OutboxEntry:
        db.execute(
            "UPDATE kit_outbox SET next_attempt_at = ?, attempts = attempts + 1, "
            "first_attempt_at = COALESCE(first_attempt_at, ?) WHERE id = ?",
            (now + lease_s, now, entry_id),
        )
        entry = self._entry_where(db, "id = ?", (entry_id,))
        assert entry is not None
        return entry

    async def finish_attempt(
        self,
        entry_id: int,
        now: float,
        outcome: str,
        state: EntryState,
        next_attempt_at: float | None,
    ) -> None:
        assert (state == "due") == (next_attempt_at is not None)

        def run() -> None:
            with self._write() as db:
                db.execute(
                    "INSERT INTO kit_outbox_attempts (entry_id, at, outcome) VALUES (?, ?, ?)",
                    (entry_id, now, outcome[:1000]),
                )
                db.execute(
                    "UPDATE kit_outbox SET state = ?, next_attempt_at = COALESCE(?, "
                    "next_attempt_at), last_error = ?, finished_at = ? WHERE id = ?",
                    (
                        state,
                        next_attempt_at,
                        None if state == "delivered" else outcome[:1000],
                        None if state == "due" else now,
                        entry_id,
                    ),
                )

        await self._run(run)

    async def get_entry(self, kind: Kind, mm_transaction_id: str) -> OutboxEntry | None:
        def run() -> OutboxEntry | None:
            return self._entry_where(
                self._db, "kind = ? AND mm_transaction_id = ?", (kind, mm_transaction_id)
            )

        return await self._run(run)

    async def attempts(self, entry_id: int) -> list[Attempt]:
        def run() -> list[Attempt]:
            rows = self._db.execute(
                "SELECT entry_id, at, outcome FROM kit_outbox_attempts WHERE entry_id = ? "
                "ORDER BY at, rowid",
                (entry_id,),
            ).fetchall()
            return [Attempt(*row) for row in rows]

        return await self._run(run)

    async def next_due_at(self) -> float | None:
        def run() -> float | None:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM kit_outbox WHERE state = 'due'"
            ).fetchone()
            return cast(float | None, row[0])

        return await self._run(run)

    def _entry_where(
        self, db: sqlite3.Connection, where: str, params: tuple[Any, ...]
    ) -> OutboxEntry | None:
        row = db.execute(f"SELECT {_ENTRY_COLUMNS} FROM kit_outbox WHERE {where}", params)
        found = row.fetchone()
        if found is None:
            return None
        values = list(found)
        values[5] = Decimal(values[5])
        return OutboxEntry(*values)

    # -- payment callbacks -------------------------------------------------------------------

    async def claim_payment(self, order: PaymentOrder, now: float, lease_s: float) -> ClaimResult:
        def run() -> ClaimResult:
            with self._write() as db:
                row = db.execute(
                    "SELECT fingerprint, state, claimed_until FROM kit_payments "
                    "WHERE cp_order_id = ?",
                    (order.cp_order_id,),
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO kit_payments (cp_order_id, fingerprint, uid, server_id, "
                        "product_id, product_price, ext_params, ts_ms, state, claimed_until, "
                        "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'delivering', ?, ?)",
                        (
                            order.cp_order_id,
                            order.fingerprint,
                            order.uid,
                            order.server_id,
                            order.product_id,
                            order.product_price,
                            order.ext_params,
                            order.ts_ms,
                            now + lease_s,
                            now,
                        ),
                    )
                    return "claimed"
                fingerprint, state, claimed_until = row
                if fingerprint != order.fingerprint:
                    return "conflict"
                if state == "delivered":
                    return "delivered"
                if claimed_until > now:
                    return "busy"
                # The previous claimant died mid-delivery: take over.
                db.execute(
                    "UPDATE kit_payments SET claimed_until = ? WHERE cp_order_id = ?",
                    (now + lease_s, order.cp_order_id),
                )
                return "claimed"

        return await self._run(run)

    async def complete_payment(self, cp_order_id: str, now: float) -> None:
        def run() -> None:
            with self._write() as db:
                db.execute(
                    "UPDATE kit_payments SET state = 'delivered', delivered_at = ? "
                    "WHERE cp_order_id = ?",
                    (now, cp_order_id),
                )

        await self._run(run)

    async def release_payment(self, cp_order_id: str) -> None:
        def run() -> None:
            with self._write() as db:
                db.execute(
                    "DELETE FROM kit_payments WHERE cp_order_id = ? AND state = 'delivering'",
                    (cp_order_id,),
                )

        await self._run(run)

    async def is_delivered(self, cp_order_id: str) -> bool:
        def run() -> bool:
            row = self._db.execute(
                "SELECT 1 FROM kit_payments WHERE cp_order_id = ? AND state = 'delivered'",
                (cp_order_id,),
            ).fetchone()
            return row is not None

        return await self._run(run)

    async def close(self) -> None:
        await self._run(self._db.close)


def _transaction(row: tuple[Any, ...]) -> TransactionRecord:
    values = list(row)
    values[3] = Decimal(values[3])
    return TransactionRecord(*values)
