"""The SQLite adapter: the embedded default store.

One connection per process does all wallet work on one dedicated thread, each call inside
``BEGIN IMMEDIATE`` … ``COMMIT``: writers are serialized by SQLite itself, across threads and across
processes (``busy_timeout`` makes a second process wait instead of failing). WAL lets readers run
beside the writer; ``synchronous=FULL`` makes every acknowledged commit durable.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from qwallet.domain import ledger
from qwallet.domain.ledger import WalletBalances
from qwallet.domain.sessions import SessionRecord
from qwallet.domain.transactions import Kind, Phase, State, TransactionRecord
from qwallet.store import engine
from qwallet.store.engine import PlayerRecord
from qwallet.store.port import (
    BalanceView,
    BeginCall,
    ConfirmCall,
    MoneyResult,
    Partner,
    PartnerCredential,
    RollbackCall,
    SessionView,
)
from qwallet.store.sql import Row, SqlTransaction, to_sqlite_placeholders

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` → the file's path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
    return Path(url[len(prefix) :])


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteRepository:
    """Row access for ``qwallet.store.engine`` on an open SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get_session(self, token: str) -> SessionRecord | None:
        row = self._conn.execute(
            "SELECT token, player_id, partner_id, last_seen_at_ms, idle_timeout_ms,"
            " expires_at_ms, revoked_at_ms FROM sessions WHERE token = ?",
            (token,),
        ).fetchone()
        return None if row is None else SessionRecord(*row)

    def touch_session(self, token: str, now_ms: int) -> None:
        self._conn.execute(
            "UPDATE sessions SET last_seen_at_ms = ? WHERE token = ?", (now_ms, token)
        )

    def get_player(self, player_id: str) -> PlayerRecord | None:
        row = self._conn.execute(
            "SELECT id, nickname, currency, language, status, available_minor, held_minor,"
            " pending_in_minor, daily_withdraw_limit_minor, limit_day, day_withdrawn_minor"
            " FROM players WHERE id = ?",
            (player_id,),
        ).fetchone()
        if row is None:
            return None
        return PlayerRecord(
            id=row[0],
            nickname=row[1],
            currency=row[2],
            language=row[3],
            blocked=row[4] == "blocked",
            balances=WalletBalances(row[5], row[6], row[7]),
            daily_withdraw_limit_minor=row[8],
            limit_day=row[9],
            day_withdrawn_minor=row[10],
        )

    def save_player(self, player: PlayerRecord) -> None:
        b = player.balances
        self._conn.execute(
            "UPDATE players SET available_minor = ?, held_minor = ?, pending_in_minor = ?,"
            " limit_day = ?, day_withdrawn_minor = ? WHERE id = ?",
            (
                b.available_minor,
                b.held_minor,
                b.pending_in_minor,
                player.limit_day,
                player.day_withdrawn_minor,
                player.id,
            ),
        )

    def get_transaction(
        self, partner_id: int, kind: Kind, mm_transaction_id: str
    ) -> TransactionRecord | None:
        # The key (its primary key is the only index on these columns) leads to the live row;
        # an archived transaction's key row holds its final answer (docs/operations.md), as
        # wallet_v1_find does on PostgreSQL.
        key = self._conn.execute(
            "SELECT qw_transaction_id, created_at_ms, player_id, amount_minor, currency, state,"
            " begin_balance_minor, final_balance_minor FROM transaction_keys"
            " WHERE partner_id = ? AND mm_transaction_id = ? AND kind = ?",
            (partner_id, mm_transaction_id, kind.value),
        ).fetchone()
        if key is None:
            return None
        if key[5] is not None:
            row = (key[0], *key[2:])
        else:
            row = self._conn.execute(
                "SELECT qw_transaction_id, player_id, amount_minor, currency, state,"
                " begin_balance_minor, final_balance_minor FROM transactions"
                " WHERE qw_transaction_id = ? AND created_at_ms = ?",
                (key[0], key[1]),
            ).fetchone()
            if row is None:
                return None
        return TransactionRecord(
            qw_transaction_id=row[0],
            partner_id=partner_id,
            kind=kind,
            mm_transaction_id=mm_transaction_id,
            player_id=row[1],
            amount_minor=row[2],
            currency=row[3],
            state=State(row[4]),
            begin_balance_minor=row[5],
            final_balance_minor=row[6],
        )

    def insert_transaction(
        self, record: TransactionRecord, description: str | None, now_ms: int
    ) -> None:
        # The key row holds the id's uniqueness (and outlives an archived row).
        self._conn.execute(
            "INSERT INTO transaction_keys (partner_id, mm_transaction_id, kind,"
            " qw_transaction_id, created_at_ms) VALUES (?, ?, ?, ?, ?)",
            (
                record.partner_id,
                record.mm_transaction_id,
                record.kind.value,
                record.qw_transaction_id,
                now_ms,
            ),
        )
        self._conn.execute(
            "INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id,"
            " player_id, amount_minor, currency, state, description, begin_balance_minor,"
            " final_balance_minor, created_at_ms, updated_at_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.qw_transaction_id,
                record.partner_id,
                record.kind.value,
                record.mm_transaction_id,
                record.player_id,
                record.amount_minor,
                record.currency,
                record.state.value,
                description,
                record.begin_balance_minor,
                record.final_balance_minor,
                now_ms,
                now_ms,
            ),
        )

    def finish_transaction(
        self, record: TransactionRecord, reason: str | None, now_ms: int
    ) -> None:
        self._conn.execute(
            "UPDATE transactions SET state = ?, final_balance_minor = ?, rollback_reason = ?,"
            " updated_at_ms = ? WHERE qw_transaction_id = ?",
            (
                record.state.value,
                record.final_balance_minor,
                reason,
                now_ms,
                record.qw_transaction_id,
            ),
        )

    def add_entries(
        self, record: TransactionRecord, phase: Phase, entries: ledger.Movement, now_ms: int
    ) -> None:
        self._conn.executemany(
            "INSERT INTO ledger_entries (transaction_id, phase, account, player_id, partner_id,"
            " currency, amount_minor, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    record.qw_transaction_id,
                    phase.value,
                    account.value,
                    None if account is ledger.Account.PARTNER else record.player_id,
                    record.partner_id if account is ledger.Account.PARTNER else None,
                    record.currency,
                    delta,
                    now_ms,
                )
                for account, delta in entries
            ],
        )


class _SqliteTransaction:
    """``SqlTransaction`` on the admin connection; every call runs on the admin thread."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        query = to_sqlite_placeholders(sql)

        def run() -> list[Row]:
            return [dict(row) for row in self._store._admin.execute(query, args).fetchall()]

        return await self._store._on_admin(run)

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: object) -> int:
        query = to_sqlite_placeholders(sql)

        def run() -> int:
            return self._store._admin.execute(query, args).rowcount

        return await self._store._on_admin(run)


class SqliteStore:
    """``WalletStore`` and ``SqlDatabase`` on one SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._admin = connect(path)
        self._repo = SqliteRepository(self._conn)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qwallet-sqlite")
        self._admin_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="qwallet-sqlite-admin"
        )
        # Admin transactions span several awaits; the lock keeps two of them from interleaving
        # on the one admin connection.
        self._admin_lock = asyncio.Lock()
        self._closed = threading.Event()

    # -- wallet hot path ------------------------------------------------------------------

    def _in_transaction(self, work: Callable[[SqliteRepository], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(self._repo)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result

    async def _run(self, work: Callable[[SqliteRepository], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_transaction, work)

    async def verify_session(self, partner_id: int, token: str, now_ms: int) -> SessionView:
        return await self._run(lambda repo: engine.verify_session(repo, partner_id, token, now_ms))

    async def get_balance(self, partner_id: int, token: str, now_ms: int) -> BalanceView:
        return await self._run(lambda repo: engine.get_balance(repo, partner_id, token, now_ms))

    async def begin(self, call: BeginCall) -> MoneyResult:
        return await self._run(lambda repo: engine.begin(repo, call))

    async def confirm(self, call: ConfirmCall) -> MoneyResult:
        return await self._run(lambda repo: engine.confirm(repo, call))

    async def rollback(self, call: RollbackCall) -> MoneyResult:
        return await self._run(lambda repo: engine.rollback(repo, call))

    # -- authentication lookups -------------------------------------------------------------

    async def find_credential(self, username: str) -> list[PartnerCredential]:
        rows = await self._fetch_plain(
            "SELECT p.id, p.name, p.ip_allow, p.client_url, c.username, c.password_hash, p.sandbox"
            " FROM partner_credentials c JOIN partners p ON p.id = c.partner_id"
            " WHERE c.username = ? AND c.revoked_at_ms IS NULL",
            (username,),
        )
        return [
            PartnerCredential(
                Partner(row[0], row[1], _ip_list(row[2]), row[3], bool(row[6])), row[4], row[5]
            )
            for row in rows
        ]

    async def find_operator_key(self, key_hash: str) -> str | None:
        rows = await self._fetch_plain(
            "SELECT name FROM operator_api_keys WHERE key_hash = ? AND revoked_at_ms IS NULL",
            (key_hash,),
        )
        return str(rows[0][0]) if rows else None

    async def _fetch_plain(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self._conn.execute(sql, args).fetchall()
        )

    async def ping(self) -> None:
        await self._fetch_plain("SELECT 1", ())

    # -- operator side ------------------------------------------------------------------------

    async def _on_admin(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._admin_executor, work)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._admin_lock:
            await self._on_admin(lambda: self._admin.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                await self._on_admin(lambda: self._admin.execute("ROLLBACK"))
                raise
            await self._on_admin(lambda: self._admin.execute("COMMIT"))

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        await loop.run_in_executor(self._admin_executor, self._admin.close)
        self._executor.shutdown(wait=True)
        self._admin_executor.shutdown(wait=True)


def _ip_list(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(str(item) for item in json.loads(text))
