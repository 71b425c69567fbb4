"""The PostgreSQL adapter: the production store.

Every wallet call is one statement, ``SELECT * FROM wallet_v1_<use case>(…)``, so one round trip
and one database transaction (autocommit). The functions (``store/sql/wallet_v1.sql``, installed by
migration 0002) do the work of ``qwallet.store.engine`` in PL/pgSQL with the same order of checks,
and lock the player's row, so the rules hold at READ COMMITTED with any number of server
processes. They answer with a result code, which this module turns into the same ``WalletError``
the engine raises. The values the domain owns (the session refresh interval, the UTC day of the
daily limit) are passed in as parameters on every call, so the SQL holds no copy of them.

The pool skips asyncpg's per-release reset query (one more round trip on every call): nothing here
leaves session state behind, and a connection released inside a transaction is still rolled back.
Users of ``transaction()`` must not change session state either (use ``SET LOCAL``, not ``SET``).

Clusters and failover (docs/high-availability.md). ``QWALLET_DATABASE_URL`` may name several
hosts (``postgresql://h1:5432,h2:5432/qwallet?target_session_attrs=read-write``); asyncpg tries
them in order and keeps the first that accepts writes. When a call fails because its connection
was lost or landed on a server that cannot write, every pooled connection is expired, so the
next calls connect afresh and find the new primary; the failed call answers 100 / HTTP 500,
which the partner retries. asyncpg's own connect timeout covers the whole host list, so a host
that hangs (a frozen machine, a route that drops packets) would use it all and the hosts after
it would never be tried; the pool therefore tries the hosts one at a time, each with its own
timeout, the host that last accepted first (``_HostList``); the migrations connect the same
way (``connect``).

No commit wait is ever cancelled from here. With synchronous replication a cancelled wait leaves
a commit visible on the primary that the standby may never receive; so the statement timeout
is not asyncpg's ``command_timeout`` (which sends the server a cancel request) but a timer that
closes the connection: the server then finishes the commit wait on its own, and the call
answers 500. A wait cancelled by anyone else (``pg_cancel_backend``) makes PostgreSQL report
success with a WARNING; every WARNING on a call turns its answer into 500 / code 100
(``CommitNotDurableError``), so no such commit is acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import asyncpg

from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.domain.sessions import MS_PER_DAY, SESSION_TOUCH_INTERVAL_MS, utc_day
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
from qwallet.store.sql import Row, SqlTransaction, StatementTimeoutError

log = logging.getLogger("qwallet.store.postgres")
_T = TypeVar("_T")

WALLET_FUNCTIONS_SCRIPT = "wallet_v1.sql"
ID_FUNCTIONS_SCRIPT = "ids_v1.sql"
ID_FUNCTIONS = ("qwallet_uuid_v7(bigint)",)
"""What ``ids_v1.sql`` installs (migration 0018): the time-ordered ids the wallet functions
create. Not named ``wallet_v1_*``: it is no use case, and a later ``wallet_v2`` would share it."""
_SESSION_SIGNATURE_BEFORE_0006 = "wallet_v1_session(integer, text, bigint)"
_BEGIN_SIGNATURE_BEFORE_0006 = (
    "wallet_v1_begin(integer, text, text, text, bigint, text, text, bigint, bigint)"
)
WALLET_FUNCTIONS = (
    "wallet_v1_session(integer, text, bigint, bigint)",
    "wallet_v1_begin(integer, text, text, text, bigint, text, text, bigint, bigint, integer,"
    " bigint)",
    "wallet_v1_confirm(integer, text, text, text, bigint, text, bigint)",
    "wallet_v1_rollback(integer, text, text, text, text, bigint)",
    "wallet_v1_apply_movement(text, text, text, text, integer, text, bigint, bigint,"
    " integer, bigint)",
    "wallet_v1_find(integer, text, text)",
    _SESSION_SIGNATURE_BEFORE_0006,
    _BEGIN_SIGNATURE_BEFORE_0006,
)
"""Every wallet function installed, with its argument types (for ``DROP FUNCTION``): those of
the script, then the two signatures of revision 0005 that migration 0006 keeps as wrappers.
``wallet_v1_find`` (migration 0011) returns the row type of ``transactions``, so it must be
dropped before that table is replaced."""

MAX_ATTEMPTS = 4
"""Tries of one call that failed on a serialization failure, a deadlock or a unique violation.

The functions are built so that none of these can happen (per-player locks in one order,
``ON CONFLICT``); the retry is a guard, and a call that still fails answers 134 (retry shortly)."""

_SESSION_SQL = "SELECT * FROM wallet_v1_session($1, $2, $3, $4)"
_BEGIN_SQL = "SELECT * FROM wallet_v1_begin($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
_CONFIRM_SQL = "SELECT * FROM wallet_v1_confirm($1, $2, $3, $4, $5, $6, $7)"
_ROLLBACK_SQL = "SELECT * FROM wallet_v1_rollback($1, $2, $3, $4, $5, $6)"

_RETRYABLE = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.UniqueViolationError,
)
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    asyncpg.exceptions.AdminShutdownError,  # 57P01: the server is stopping (switchover)
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting, or shutting down
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: on a standby, not the primary
    asyncpg.exceptions.TargetServerAttributeNotMatched,  # no host accepts writes yet
    ConnectionError,
    OSError,
    TimeoutError,
)
"""Failures that say the connection (or the server behind it) is gone or is no longer the
primary: the pool's connections are expired so that the next call finds the new primary."""

CONNECT_TIMEOUT_S = 5.0
"""asyncpg's connect timeout for a single host (its 60 s default hangs requests on a dead
route)."""
HOST_CONNECT_TIMEOUT_S = 2.0
"""Each host of a multi-host URL gets this long to connect (and show it accepts writes)."""
ACQUIRE_TIMEOUT_S = 10.0
"""How long a call waits for a pooled connection (a free one, or a new one connected through
the host list) before it answers 100 / HTTP 500: more than the host list needs
(``HOST_CONNECT_TIMEOUT_S`` per host), and the statement bound's length, so a call queued
behind connections busy up to that bound is answered instead of waiting behind them, one
bound after another, without limit."""

TCP_KEEPALIVE_IDLE_S = 5
"""Seconds a pooled connection may sit idle before the kernel probes its peer."""
TCP_KEEPALIVE_INTERVAL_S = 1
TCP_KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 5_000
"""How long sent data (a statement, a keepalive probe) may stay unacknowledged before the
kernel closes the connection. A server machine that vanishes from the network (power lost, a
partition) sends no reset; without this bound a call on a connection to it would wait for the
10 s statement bound and idle pooled connections to it would be found out only when used.
The peer's *kernel* acknowledges, however busy PostgreSQL is, so a slow statement or a long
commit wait is never cut by it. Closing the connection is never a cancel: the server finishes
(or rolls back) on its own, as with the statement bound."""

_STATUS_COUNT = re.compile(r"(\d+)$")
_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]?[A-Za-z0-9_]*\$")


# -- SQL scripts ---------------------------------------------------------------------------------


def read_sql(name: str) -> str:
    """The text of ``store/sql/<name>``, shipped as package data."""
    return resources.files("qwallet.store").joinpath("sql", name).read_text(encoding="utf-8")


def wallet_function_statements() -> list[str]:
    """The statements that install the current wallet functions: ``ids_v1.sql`` first (the
    functions call ``qwallet_uuid_v7``; a SQL function must exist before a caller runs, and
    every migration that installs the current functions may be the last one applied), then
    ``wallet_v1.sql``."""
    return [
        *split_sql(read_sql(ID_FUNCTIONS_SCRIPT)),
        *split_sql(read_sql(WALLET_FUNCTIONS_SCRIPT)),
    ]


def split_sql(script: str) -> list[str]:
    """The statements of ``script``, split at top-level semicolons.

    Semicolons inside comments, quoted strings and dollar-quoted bodies do not split. Needed
    because SQLAlchemy's asyncpg driver prepares what it runs, one statement at a time.
    """
    parts: list[str] = []
    start = i = 0
    n = len(script)
    while i < n:
        char = script[i]
        if script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif char == "'":
            end = i + 1
            while end < n and (script[end] != "'" or script.startswith("''", end)):
                end += 2 if script.startswith("''", end) else 1
            i = end + 1
        elif char == "$" and (match := _DOLLAR_TAG.match(script, i)) is not None:
            end = script.find(match.group(0), match.end())
            i = n if end < 0 else end + len(match.group(0))
        elif char == ";":
            parts.append(script[start:i])
            start = i = i + 1
        else:
            i += 1
    parts.append(script[start:])
    return [part.strip() for part in parts if _has_code(part)]


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def wrappers_before_0006() -> list[str]:
    """``CREATE`` statements for the two signatures of revision 0005, as thin SQL wrappers.

    Before 0006 the session refresh interval and the length of a day were literals inside
    ``wallet_v1_session(integer, text, bigint)`` and ``wallet_v1_begin(…9 arguments)``; now they
    are parameters. A server process of the previous release, still running during a rolling
    upgrade, calls the old signatures: these wrappers answer it with the same behaviour, passing
    the values written here from the domain's constants (not copied by hand).
    """
    session = (
        "CREATE OR REPLACE FUNCTION wallet_v1_session("
        "p_partner_id integer, p_token text, p_now_ms bigint,"
        " OUT code integer, OUT player_id text, OUT nickname text, OUT currency text,"
        " OUT language text, OUT available_minor bigint)"
        " LANGUAGE sql AS $$ SELECT * FROM wallet_v1_session("
        f"p_partner_id, p_token, p_now_ms, {int(SESSION_TOUCH_INTERVAL_MS)}::bigint) $$"
    )
    begin = (
        "CREATE OR REPLACE FUNCTION wallet_v1_begin("
        "p_partner_id integer, p_kind text, p_token text, p_mm_transaction_id text,"
        " p_amount_minor bigint, p_currency text, p_description text,"
        " p_max_balance_minor bigint, p_now_ms bigint,"
        " OUT code integer, OUT description text, OUT mm_transaction_id text,"
        " OUT qw_transaction_id text, OUT currency text, OUT balance_minor bigint)"
        " LANGUAGE sql AS $$ SELECT * FROM wallet_v1_begin("
        "p_partner_id, p_kind, p_token, p_mm_transaction_id, p_amount_minor, p_currency,"
        " p_description, p_max_balance_minor, p_now_ms,"
        f" (p_now_ms / {int(MS_PER_DAY)})::integer, {int(SESSION_TOUCH_INTERVAL_MS)}::bigint) $$"
    )
    return [session, begin]


# -- the adapter ---------------------------------------------------------------------------------


def asyncpg_dsn(url: str) -> str:
    """``postgresql://…``, ``postgres://…`` or SQLAlchemy's ``postgresql+asyncpg://…`` → asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    if not url.startswith("postgresql://"):
        raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://…)")
    return url


def host_list(dsn: str) -> list[tuple[str, int | None]]:
    """The hosts of a ``postgresql://`` URL's authority, in order (``[]`` when it names none,
    e.g. a Unix socket given as ``?host=``); ports as given, ``None`` for the default."""
    hostspec = urllib.parse.urlsplit(dsn).netloc.rpartition("@")[2]
    hosts: list[tuple[str, int | None]] = []
    for item in hostspec.split(","):
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = item.partition(":")
        if host:
            hosts.append((urllib.parse.unquote(host), int(port) if port else None))
    return hosts


class _HostList:
    """The pool's connect function for a multi-host URL: one host at a time, each with its own
    timeout, starting with the host that accepted last (after a failover, the new primary once
    found; a host that refuses costs a round trip, one that hangs ``timeout_s``)."""

    def __init__(self, hosts: list[tuple[str, int | None]], timeout_s: float) -> None:
        self.hosts = hosts
        self.timeout_s = timeout_s
        self._last = 0

    async def __call__(self, dsn: str, **kwargs: Any) -> asyncpg.Connection:
        kwargs["timeout"] = self.timeout_s
        order = [self._last, *(i for i in range(len(self.hosts)) if i != self._last)]
        error: BaseException | None = None
        for index in order:
            host, port = self.hosts[index]
            try:
                connection = await asyncpg.connect(dsn, host=host, port=port, **kwargs)
            except (*_CONNECTION_LOST, asyncpg.exceptions.InterfaceError) as failure:
                error = failure  # refused, hung, starting up, or not accepting writes
                continue
            self._last = index
            return connection
        assert error is not None
        raise error


async def register_codecs(connection: asyncpg.Connection) -> None:
    """``uuid`` values in and out as ``str``, on every connection the store opens.

    Migration 0014 stores the platform's ids as ``uuid``; asyncpg would hand them over as
    ``uuid.UUID`` objects. With this codec the code above the store keeps seeing the canonical
    text form (``'0fabcdc4-fe07-…'``) it sees on SQLite, and passes ids as ``str``. Text
    format: the server parses and prints the value itself, exactly as ``uuid_in``/``uuid_out``
    do for a cast. A string that is not a UUID is refused by the server
    (``InvalidTextRepresentationError``): callers holding an outside string check it first
    (``qwallet.domain.ids``).
    """
    await connection.set_type_codec(
        "uuid", schema="pg_catalog", encoder=str, decoder=str, format="text"
    )


async def connect(url: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> asyncpg.Connection:
    """One connection to ``url`` as the pool makes them: a multi-host URL's hosts one at a time,
    each with ``HOST_CONNECT_TIMEOUT_S`` (a host that hangs costs that long and never hides the
    hosts after it); a single host with ``timeout_s``. For the migrations, which connect on
    their own (``qwallet db upgrade``)."""
    dsn = asyncpg_dsn(url)
    hosts = host_list(dsn)
    if len(hosts) > 1:
        return await _HostList(hosts, HOST_CONNECT_TIMEOUT_S)(dsn)
    return await asyncpg.connect(dsn, timeout=timeout_s)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to do (asyncpg has already rolled back any open transaction)."""


class PoolTimeoutError(Exception):
    """No pooled connection within ``ACQUIRE_TIMEOUT_S``: every connection busy (statements
    waiting on their bound, a commit wait) or being connected. Answered as 100 / HTTP 500
    (retry-safe: nothing was sent to the server). The pool is not expired: its connections may
    be healthy and merely all in use."""


class CommitNotDurableError(Exception):
    """The server answered a call with a WARNING, such as PostgreSQL's "canceling wait for
    synchronous replication": the commit may exist on this server only. Answered as 100 / HTTP
    500 (retry-safe): the retry replays the call, and that replay's own commit waits for the
    standby (docs/high-availability.md)."""


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback of a statement whose caller was cancelled: its failure is expected."""
    if not task.cancelled():
        task.exception()


class _WatchedConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that counts the WARNINGs the server sends on it.

    Counted where asyncpg's protocol hands over each NoticeResponse, as it is parsed and so
    before the result of the same statement reaches its caller; asyncpg's public log listeners
    run later (scheduled on the loop) and are removed, with a warning, at every pool release.
    asyncpg is pinned; the failover suite's cancel-hazard step proves this hook still works.
    """

    __slots__ = ("warnings",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warnings = 0
        _bound_dead_peer(self._transport.get_extra_info("socket"))

    def _process_log_message(self, fields: dict[str, str], last_query: str) -> None:
        # "V" is the severity never translated, whatever the server's lc_messages.
        if fields.get("V", fields.get("S")) == "WARNING":
            self.warnings += 1
        super()._process_log_message(fields, last_query)


def _bound_dead_peer(sock: Any) -> None:
    """TCP keepalives and ``TCP_USER_TIMEOUT`` on a TCP connection (asyncpg sets neither), so
    that a peer gone without a reset is found out in seconds, busy or idle. Unix sockets have
    no peer machine to lose and are left alone."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, TCP_KEEPALIVE_IDLE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, TCP_KEEPALIVE_INTERVAL_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, TCP_KEEPALIVE_COUNT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)


def _raise_for(row: asyncpg.Record) -> None:
    """Raise the ``WalletError`` for a non-zero result code, with the engine's extras."""
    code = row["code"]
    if code == 0:
        return
    extra: dict[str, Any] = {}
    if code == ErrorCode.INSUFFICIENT_FUNDS:
        extra["balance"] = row["balance_minor"]
    if row["qw_transaction_id"] is not None:
        extra["mmTransactionId"] = row["mm_transaction_id"]
        extra["qwTransactionId"] = row["qw_transaction_id"]
    raise WalletError(ErrorCode(code), row["description"], **extra)


def _money_result(row: asyncpg.Record | None) -> MoneyResult:
    assert row is not None, "wallet functions always answer one row"
    _raise_for(row)
    return MoneyResult(
        row["mm_transaction_id"], row["qw_transaction_id"], row["currency"], row["balance_minor"]
    )


def _rows_changed(status: str) -> int:
    """``UPDATE 3`` / ``INSERT 0 1`` / ``DELETE 0`` → the count; statements without one → 0."""
    match = _STATUS_COUNT.search(status or "")
    return int(match.group(1)) if match else 0


class _PostgresTransaction:
    """``SqlTransaction`` on one pooled connection inside an open transaction."""

    def __init__(self, connection: asyncpg.Connection, store: PostgresStore) -> None:
        self._connection = connection
        self._store = store

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        rows = await self._store._guarded(self._connection, self._connection.fetch(sql, *args))
        return [dict(row) for row in rows]

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        connection = self._connection
        row = await self._store._guarded(connection, connection.fetchrow(sql, *args))
        return None if row is None else dict(row)

    async def execute(self, sql: str, *args: object) -> int:
        connection = self._connection
        return _rows_changed(await self._store._guarded(connection, connection.execute(sql, *args)))


class PostgresStore:
    """``WalletStore`` and ``SqlDatabase`` on an asyncpg pool."""

    dialect = "postgresql"

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        command_timeout_s: float = 10.0,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        self._pool = pool
        self._max_attempts = max_attempts
        self._command_timeout_s = command_timeout_s
        self._acquire_timeout_s = acquire_timeout_s
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_min: int = 2,
        pool_max: int = 20,
        command_timeout_s: float = 10.0,
        statement_cache_size: int = 256,
        max_attempts: int = MAX_ATTEMPTS,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> PostgresStore:
        """Connect a pool to ``url`` (one host, or several with ``target_session_attrs``).

        ``statement_cache_size=0`` is for poolers that cannot keep prepared statements
        (pgbouncer before 1.21 in transaction mode); it costs one more round trip per call.
        ``command_timeout_s`` bounds each statement by closing its connection, never by a
        cancel request (see the module docstring); ``acquire_timeout_s`` bounds the wait for a
        pooled connection (``PoolTimeoutError``).
        """
        assert 0 < pool_min <= pool_max, (pool_min, pool_max)
        dsn = asyncpg_dsn(url)
        hosts = host_list(dsn)
        connect = _HostList(hosts, HOST_CONNECT_TIMEOUT_S) if len(hosts) > 1 else None
        pool = await asyncpg.create_pool(
            dsn,
            connect=connect,
            min_size=pool_min,
            max_size=pool_max,
            command_timeout=None,  # asyncpg's would cancel commit waits: _guarded bounds calls
            timeout=CONNECT_TIMEOUT_S,
            statement_cache_size=statement_cache_size,
            reset=_keep_session,
            init=register_codecs,
            connection_class=_WatchedConnection,
            server_settings={
                "application_name": "qwallet",
                # WARNINGs must reach us (a cancelled commit wait is one), whatever the role's
                # or database's own setting says.
                "client_min_messages": "warning",
            },
        )
        return cls(
            pool,
            max_attempts=max_attempts,
            command_timeout_s=command_timeout_s,
            acquire_timeout_s=acquire_timeout_s,
        )

    async def _guarded(self, connection: Any, operation: Awaitable[_T]) -> _T:
        """Await one statement on ``connection`` without ever cancelling it on the server.

        Past the timeout, or when the caller is cancelled, the connection is closed instead:
        the server finishes (or rolls back) on its own and its commit wait, if any, runs to its
        end. A WARNING sent with the statement raises ``CommitNotDurableError``.
        """
        warnings = connection.warnings
        loop = asyncio.get_running_loop()
        bound = _Bound(connection)
        timer = loop.call_later(self._command_timeout_s, bound.close)
        task = asyncio.ensure_future(operation)
        try:
            # shield: cancelling the caller must not make asyncpg send a cancel request.
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_retrieve)
            connection.terminate()
            raise
        except Exception as error:
            if bound.closed or isinstance(error, _CONNECTION_LOST):
                # A server that stopped answering looks the same as a slow statement here, so
                # both expire the pool: its other connections may be stuck on the same server.
                await self._pool.expire_connections()
            if bound.closed:
                raise StatementTimeoutError(
                    f"a statement ran past {self._command_timeout_s} s; its connection was closed"
                ) from error
            raise
        finally:
            timer.cancel()
        if connection.warnings != warnings:
            log.error(
                "the server sent a WARNING with a statement (a cancelled wait for synchronous"
                " replication?): answered as an error; the retry replays it durably"
            )
            raise CommitNotDurableError("the server reported a warning; outcome not durable")
        return result

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; failing to connect one expires the pool (the primary moved).

        The wait is bounded (``PoolTimeoutError``): asyncpg's own ``acquire()`` waits without
        limit for a connection to come free, so without the bound a call queued behind busy
        connections would answer only when they do — one bound after another.
        """
        try:
            async with asyncio.timeout(self._acquire_timeout_s) as deadline:
                connection = await self._pool.acquire()
        except TimeoutError:
            if not deadline.expired():
                # A connect that timed out on its own (every host hung): the primary moved.
                await self._pool.expire_connections()
                raise
            raise PoolTimeoutError(
                f"no database connection within {self._acquire_timeout_s} s"
            ) from None
        except _CONNECTION_LOST:
            await self._pool.expire_connections()
            raise
        try:
            yield connection
        except _CONNECTION_LOST:
            await self._pool.expire_connections()
            raise
        finally:
            await self._pool.release(connection)

    # -- wallet hot path ------------------------------------------------------------------

    async def _call(self, sql: str, *args: object) -> asyncpg.Record | None:
        """One statement, retried only on the failures that leave nothing applied."""
        attempt = 1
        while True:
            try:
                async with self._connection() as connection:
                    row: asyncpg.Record | None = await self._guarded(
                        connection, connection.fetchrow(sql, *args)
                    )
                    return row
            except _RETRYABLE:
                if attempt >= self._max_attempts:
                    raise WalletError(ErrorCode.TRANSACTION_IN_PROGRESS) from None
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))
            attempt += 1

    async def verify_session(self, partner_id: int, token: str, now_ms: int) -> SessionView:
        row = await self._call(_SESSION_SQL, partner_id, token, now_ms, SESSION_TOUCH_INTERVAL_MS)
        assert row is not None
        if row["code"] != 0:
            raise WalletError(ErrorCode(row["code"]))
        return SessionView(
            row["player_id"],
            row["nickname"],
            row["currency"],
            row["language"],
            row["available_minor"],
        )

    async def get_balance(self, partner_id: int, token: str, now_ms: int) -> BalanceView:
        view = await self.verify_session(partner_id, token, now_ms)
        return BalanceView(view.currency, view.available_minor)

    async def begin(self, call: BeginCall) -> MoneyResult:
        row = await self._call(
            _BEGIN_SQL,
            call.partner_id,
            call.kind.value,
            call.token,
            call.mm_transaction_id,
            call.amount_minor,
            call.currency,
            call.description,
            call.max_balance_minor,
            call.now_ms,
            utc_day(call.now_ms),
            SESSION_TOUCH_INTERVAL_MS,
        )
        return _money_result(row)

    async def confirm(self, call: ConfirmCall) -> MoneyResult:
        row = await self._call(
            _CONFIRM_SQL,
            call.partner_id,
            call.kind.value,
            call.token,
            call.mm_transaction_id,
            call.amount_minor,
            call.currency,
            call.now_ms,
        )
        return _money_result(row)

    async def rollback(self, call: RollbackCall) -> MoneyResult:
        row = await self._call(
            _ROLLBACK_SQL,
            call.partner_id,
            call.kind.value,
            call.token,
            call.mm_transaction_id,
            call.reason,
            call.now_ms,
        )
        return _money_result(row)

    # -- authentication lookups -------------------------------------------------------------

    async def find_credential(self, username: str) -> list[PartnerCredential]:
        async with self._connection() as connection:
            rows = await self._guarded(
                connection,
                connection.fetch(
                    "SELECT p.id, p.name, p.ip_allow, p.client_url, c.username, c.password_hash,"
                    " p.sandbox"
                    " FROM partner_credentials c JOIN partners p ON p.id = c.partner_id"
                    " WHERE c.username = $1 AND c.revoked_at_ms IS NULL",
                    username,
                ),
            )
        return [
            PartnerCredential(
                Partner(
                    row["id"],
                    row["name"],
                    _ip_list(row["ip_allow"]),
                    row["client_url"],
                    bool(row["sandbox"]),
                ),
                row["username"],
                row["password_hash"],
            )
            for row in rows
        ]

    async def find_operator_key(self, key_hash: str) -> str | None:
        async with self._connection() as connection:
            name = await self._guarded(
                connection,
                connection.fetchval(
                    "SELECT name FROM operator_api_keys"
                    " WHERE key_hash = $1 AND revoked_at_ms IS NULL",
                    key_hash,
                ),
            )
        return None if name is None else str(name)

    async def ping(self) -> None:
        """Ready only on a primary: a server in recovery (a standby, or a primary being
        demoted) cannot take a wallet call, so the pool is expired and this raises."""
        async with self._connection() as connection:
            in_recovery = await self._guarded(
                connection, connection.fetchval("SELECT pg_is_in_recovery()")
            )
        if in_recovery:
            await self._pool.expire_connections()
            raise asyncpg.exceptions.ReadOnlySQLTransactionError("connected to a standby")

    # -- operator side ------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._connection() as connection:
            transaction = connection.transaction()
            await self._guarded(connection, transaction.start())
            try:
                yield _PostgresTransaction(connection, self)
            except BaseException:
                if not _closed(connection):
                    await self._guarded(connection, transaction.rollback())
                raise
            await self._guarded(connection, transaction.commit())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close()


def _closed(connection: Any) -> bool:
    """Whether a pooled connection is closed. asyncpg hands a connection that closes (the
    statement bound, a lost server) back to its pool at once and detaches the caller's proxy,
    whose every method then raises ``InterfaceError``: that too is a closed connection."""
    try:
        return bool(connection.is_closed())
    except asyncpg.exceptions.InterfaceError:
        return True


class _Bound:
    """The statement bound of one call: closes the connection, and remembers having done so."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._connection.terminate()


def _ip_list(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(str(item) for item in json.loads(text))


__all__ = [
    "ACQUIRE_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "HOST_CONNECT_TIMEOUT_S",
    "ID_FUNCTIONS",
    "ID_FUNCTIONS_SCRIPT",
    "WALLET_FUNCTIONS",
    "WALLET_FUNCTIONS_SCRIPT",
    "CommitNotDurableError",
    "PoolTimeoutError",
    "PostgresStore",
    "StatementTimeoutError",
    "asyncpg_dsn",
    "connect",
    "host_list",
    "read_sql",
    "register_codecs",
    "split_sql",
    "wallet_function_statements",
    "wrappers_before_0006",
]
