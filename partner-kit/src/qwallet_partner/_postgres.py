"""``PostgresStore``: the kit's storage on PostgreSQL, through an asyncpg connection pool.

The same tables as ``SQLiteStore`` (prefixed ``kit_``, so they can live in the studio's own
database) and the same semantics, one method = one transaction, with PostgreSQL's own tools
where SQLite serializes every writer:

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
from decimal import Decimal
from typing import Any

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

__all__ = ["PostgresStore"]

SCHEMA_LOCK_KEY = 0x6B6974_5F7363  # "kit_sc": any constant shared by every process of the kit

SCHEMA = """
CREATE TABLE IF NOT EXISTS kit_transactions (
    kind TEXT NOT NULL CHECK (kind IN ('withdrawal', 'deposit')),
    mm_transaction_id TEXT NOT NULL,
    token TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    currency_code TEXT NOT NULL,
    description TEXT,
    state TEXT NOT NULL CHECK (state IN ('started', 'pending', 'confirmed', 'rolled_back')),
    qw_transaction_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, mm_transaction_id)
);
CREATE INDEX IF NOT EXISTS kit_transactions_undecided
    ON kit_transactions (updated_at) WHERE state IN ('started', 'pending');
CREATE TABLE IF NOT EXISTS kit_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('confirm', 'rollback')),
    mm_transaction_id TEXT NOT NULL,
    token TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    currency_code TEXT NOT NULL,
    reason TEXT,
    state TEXT NOT NULL CHECK (state IN ('due', 'delivered', 'failed', 'expired')),
    created_at DOUBLE PRECISION NOT NULL,
    first_attempt_at DOUBLE PRECISION,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_at DOUBLE PRECISION,
    UNIQUE (kind, mm_transaction_id),
    FOREIGN KEY (kind, mm_transaction_id) REFERENCES kit_transactions (kind, mm_transaction_id)
);
CREATE INDEX IF NOT EXISTS kit_outbox_due ON kit_outbox (next_attempt_at) WHERE state = 'due';
CREATE TABLE IF NOT EXISTS kit_outbox_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id BIGINT NOT NULL REFERENCES kit_outbox (id),
    at DOUBLE PRECISION NOT NULL,
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
    ts_ms BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('delivering', 'delivered')),
    claimed_until DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION
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


class PostgresStore:
    """The ``KitStore`` on PostgreSQL. ``dsn`` is a ``postgresql://`` URL.

    The store owns its pool: ``close()`` closes it. Keep the pool small — the kit makes a few
    short transactions per flow, and the outbox worker one per batch.
    """

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
                        await connection.execute(SCHEMA)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

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
        pool = await self._get_pool()
        inserted = await pool.fetchval(
            f"INSERT INTO kit_transactions ({_TRANSACTION_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, 'started', NULL, $7, $7) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            kind,
            mm_transaction_id,
            token,
            amount,
            currency_code,
            description,
            now,
        )
        if inserted is None:
            raise FlowError(f"{kind} {mm_transaction_id!r} already exists")

    async def mark_pending(
        self, kind: Kind, mm_transaction_id: str, qw_transaction_id: str, now: float
    ) -> None:
        pool = await self._get_pool()
        await pool.execute(
            "UPDATE kit_transactions SET state = 'pending', qw_transaction_id = $1, "
            "updated_at = $2 WHERE kind = $3 AND mm_transaction_id = $4 AND state = 'started'",
            qw_transaction_id,
            now,
            kind,
            mm_transaction_id,
        )

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
        pool = await self._get_pool()
        async with pool.acquire() as db, db.transaction():
            row = await db.fetchrow(
                "SELECT state, token, amount, currency_code FROM kit_transactions "
                "WHERE kind = $1 AND mm_transaction_id = $2 FOR UPDATE",
                kind,
                mm_transaction_id,
            )
            if row is None:
                raise FlowError(f"no {kind} {mm_transaction_id!r} to {operation}")
            state = row["state"]
            if state in ("confirmed", "rolled_back"):
                if state != decided:
                    raise FlowError(
                        f"{kind} {mm_transaction_id!r} is already {state}; it cannot be {decided}"
                    )
            else:
                await db.execute(
                    "UPDATE kit_transactions SET state = $1, updated_at = $2 "
                    "WHERE kind = $3 AND mm_transaction_id = $4",
                    decided,
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
                    row["token"],
                    row["amount"],
                    row["currency_code"],
                    reason,
                    now,
                    max(now, not_before or now),
                )
            found = await db.fetchrow(
                f"SELECT {_ENTRY_COLUMNS} FROM kit_outbox "
                "WHERE kind = $1 AND mm_transaction_id = $2",
                kind,
                mm_transaction_id,
            )
        assert found is not None
        return _entry(found)

    async def get_transaction(self, kind: Kind, mm_transaction_id: str) -> TransactionRecord | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(
            f"SELECT {_TRANSACTION_COLUMNS} FROM kit_transactions "
            "WHERE kind = $1 AND mm_transaction_id = $2",
            kind,
            mm_transaction_id,
        )
        return None if row is None else TransactionRecord(*row.values())

    async def undecided_before(self, before: float) -> list[TransactionRecord]:
        pool = await self._get_pool()
        rows = await pool.fetch(
            f"SELECT {_TRANSACTION_COLUMNS} FROM kit_transactions "
            "WHERE state IN ('started', 'pending') AND updated_at < $1 "
            "ORDER BY updated_at LIMIT 1000",
            before,
        )
        return [TransactionRecord(*row.values()) for row in rows]

    # -- the outbox --------------------------------------------------------------------------

    async def claim_due(self, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        pool = await self._get_pool()
        # One statement: lock what is due (skipping what another worker holds), push the lease.
        rows = await pool.fetch(
            "WITH due AS (SELECT id FROM kit_outbox WHERE state = 'due' "
            "AND next_attempt_at <= $1::float8 "
            "ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) "
            "UPDATE kit_outbox AS o SET next_attempt_at = $1::float8 + $2::float8, "
            "attempts = o.attempts + 1, "
            "first_attempt_at = COALESCE(o.first_attempt_at, $1) FROM due WHERE o.id = due.id "
            f"RETURNING {', '.join('o.' + c for c in _ENTRY_COLUMNS.split(', '))}",
            now,
            lease_s,
            limit,
        )
        entries = [_entry(row) for row in rows]
        entries.sort(key=lambda e: (e.next_attempt_at, e.id))
        return entries

    async def claim_entry(self, entry_id: int, now: float, lease_s: float) -> OutboxEntry | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(
            "UPDATE kit_outbox SET next_attempt_at = $2::float8 + $3::float8, "
            "attempts = attempts + 1, "
            "first_attempt_at = COALESCE(first_attempt_at, $2) "
            "WHERE id = $1 AND state = 'due' AND next_attempt_at <= $2 "
            f"RETURNING {_ENTRY_COLUMNS}",
            entry_id,
            now,
            lease_s,
        )
        return None if row is None else _entry(row)

    async def finish_attempt(
        self,
        entry_id: int,
        now: float,
        outcome: str,
        state: EntryState,
        next_attempt_at: float | None,
    ) -> None:
        assert (state == "due") == (next_attempt_at is not None)
        pool = await self._get_pool()
        async with pool.acquire() as db, db.transaction():
            await db.execute(
                "INSERT INTO kit_outbox_attempts (entry_id, at, outcome) VALUES ($1, $2, $3)",
                entry_id,
                now,
                outcome[:1000],
            )
            await db.execute(
                "UPDATE kit_outbox SET state = $1, "
                "next_attempt_at = COALESCE($2, next_attempt_at), last_error = $3, "
                "finished_at = $4 WHERE id = $5",
                state,
                next_attempt_at,
                None if state == "delivered" else outcome[:1000],
                None if state == "due" else now,
                entry_id,
            )

    async def get_entry(self, kind: Kind, mm_transaction_id: str) -> OutboxEntry | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(
            f"SELECT {_ENTRY_COLUMNS} FROM kit_outbox WHERE kind = $1 AND mm_transaction_id = $2",
            kind,
            mm_transaction_id,
        )
        return None if row is None else _entry(row)

    async def attempts(self, entry_id: int) -> list[Attempt]:
        pool = await self._get_pool()
        rows = await pool.fetch(
            "SELECT entry_id, at, outcome FROM kit_outbox_attempts WHERE entry_id = $1 "
            "ORDER BY at, id",
            entry_id,
        )
        return [Attempt(int(row["entry_id"]), row["at"], row["outcome"]) for row in rows]

    async def next_due_at(self) -> float | None:
        pool = await self._get_pool()
        value = await pool.fetchval(
            "SELECT MIN(next_attempt_at) FROM kit_outbox WHERE state = 'due'"
        )
        return None if value is None else float(value)

    # -- payment callbacks -------------------------------------------------------------------

    async def claim_payment(self, order: PaymentOrder, now: float, lease_s: float) -> ClaimResult:
        pool = await self._get_pool()
        async with pool.acquire() as db, db.transaction():
            inserted = await db.fetchval(
                "INSERT INTO kit_payments (cp_order_id, fingerprint, uid, server_id, product_id, "
                "product_price, ext_params, ts_ms, state, claimed_until, received_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'delivering', $9, $10) "
                "ON CONFLICT (cp_order_id) DO NOTHING RETURNING 1",
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
            )
            if inserted is not None:
                return "claimed"
            row = await db.fetchrow(
                "SELECT fingerprint, state, claimed_until FROM kit_payments "
                "WHERE cp_order_id = $1 FOR UPDATE",
                order.cp_order_id,
            )
            if row is None:
                # Released by a failed delivery between our insert and our read: try again.
                return "busy"
            if row["fingerprint"] != order.fingerprint:
                return "conflict"
            if row["state"] == "delivered":
                return "delivered"
            if row["claimed_until"] > now:
                return "busy"
            # The previous claimant died mid-delivery: take over.
            await db.execute(
                "UPDATE kit_payments SET claimed_until = $1 WHERE cp_order_id = $2",
                now + lease_s,
                order.cp_order_id,
            )
            return "claimed"

    async def complete_payment(self, cp_order_id: str, now: float) -> None:
        pool = await self._get_pool()
        await pool.execute(
            "UPDATE kit_payments SET state = 'delivered', delivered_at = $1 WHERE cp_order_id = $2",
            now,
            cp_order_id,
        )

    async def release_payment(self, cp_order_id: str) -> None:
        pool = await self._get_pool()
        await pool.execute(
            "DELETE FROM kit_payments WHERE cp_order_id = $1 AND state = 'delivering'",
            cp_order_id,
        )

    async def is_delivered(self, cp_order_id: str) -> bool:
        pool = await self._get_pool()
        found = await pool.fetchval(
            "SELECT 1 FROM kit_payments WHERE cp_order_id = $1 AND state = 'delivered'",
            cp_order_id,
        )
        return found is not None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def _entry(row: Any) -> OutboxEntry:
    values = list(row.values())
    values[0] = int(values[0])
    return OutboxEntry(*values)
