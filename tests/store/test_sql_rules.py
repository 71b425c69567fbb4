"""One definition per rule: the PL/pgSQL functions hold no copy of what Python defines.

``store/sql/wallet_v1.sql`` is parsed: every error code it answers is a member of
``qwallet.domain.errors.ErrorCode`` named next to it, the set of codes is exactly the engine's
(plus 134, which only concurrent PostgreSQL writers can produce), every description it sets is
the engine's text for the same code, and no other number is written into the functions (the
domain's constants arrive as parameters). On PostgreSQL the installed functions are checked too,
including the wrappers that keep the signatures of revision 0005 working for older processes.
"""

from __future__ import annotations

import ast
import asyncio
import re
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command

from qwallet.domain.errors import ErrorCode
from qwallet.domain.sessions import MS_PER_DAY, SESSION_TOUCH_INTERVAL_MS, utc_day
from qwallet.store.migrate import alembic_config, upgrade
from qwallet.store.postgres import WALLET_FUNCTIONS, read_sql

from .conftest import PG_URL, Backend, _admin, _with_database
from .world import (
    MINUTE_MS,
    NOW_MS,
    PARTNER,
    SECOND_MS,
    add_player,
    add_session,
    standard_world,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "qwallet"
ENGINE_SOURCES = (SRC / "store" / "engine.py", SRC / "domain" / "transactions.py")

SQL = read_sql("wallet_v1.sql")
CODE_LINE = re.compile(r"\bcode\s*:=\s*(\d+)\s*;(?:[ \t]*--[ \t]*(\w+))?")
DESCRIPTION_AFTER_CODE = re.compile(
    r"\bcode\s*:=\s*(\d+)\s*;[^\n]*\n\s*description\s*:=\s*'((?:[^']|'')*)'\s*;"
)


def sql_code() -> str:
    """The script without comments and string literals: only what executes."""
    without_comments = re.sub(r"--[^\n]*", "", SQL)
    return re.sub(r"'(?:[^']|'')*'", "''", without_comments)


def engine_refusals() -> tuple[set[ErrorCode], set[tuple[ErrorCode, str]]]:
    """Every ``ErrorCode.X`` the Python use cases raise, and each ``(code, text)`` they give."""
    codes: set[ErrorCode] = set()
    texts: set[tuple[ErrorCode, str]] = set()
    for path in ENGINE_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "WalletError"):
                continue
            first = node.args[0]
            assert isinstance(first, ast.Attribute), ast.dump(first)
            code = ErrorCode[first.attr]
            codes.add(code)
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                texts.add((code, str(node.args[1].value)))
    return codes, texts


def test_every_sql_error_code_is_named_and_is_that_error_code() -> None:
    found = CODE_LINE.findall(SQL)
    assert len(found) >= 25
    for number, name in found:
        if number == "0":
            assert name == "", "success is 0 and carries no name"
            continue
        assert name, f"code := {number} has no ErrorCode name beside it"
        assert ErrorCode[name] == int(number), (number, name)


def test_sql_answers_exactly_the_engines_error_codes() -> None:
    sql_codes = {ErrorCode(int(number)) for number, _ in CODE_LINE.findall(SQL) if number != "0"}
    engine_codes, _ = engine_refusals()
    # 134 is what a call answers after losing every round to concurrent writers of the same id;
    # the engine runs on one serialized writer (SQLite) and cannot meet one.
    assert sql_codes == engine_codes | {ErrorCode.TRANSACTION_IN_PROGRESS}


def test_sql_descriptions_are_the_engines_texts() -> None:
    sql_texts = {
        (ErrorCode(int(number)), text.replace("''", "'"))
        for number, text in DESCRIPTION_AFTER_CODE.findall(SQL)
    }
    _, engine_texts = engine_refusals()
    assert sql_texts, "the script sets descriptions"
    assert sql_texts == engine_texts


def test_no_constant_of_python_is_copied_into_the_sql() -> None:
    code = CODE_LINE.sub("", sql_code())
    numbers = {int(n) for n in re.findall(r"(?<![\w$])\d+(?![\w.])", code)}
    # 0 (success, empty amounts) and 1..3 (the rounds of the id-claim loop) are the SQL's own.
    assert numbers <= {0, 1, 3}, numbers
    for constant in ("p_touch_interval_ms", "p_today", "p_max_balance_minor"):
        assert constant in code


# -- the installed functions (PostgreSQL) ---------------------------------------------------


def postgres_only(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("the PL/pgSQL functions exist on PostgreSQL only")


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def test_every_listed_function_is_installed(backend: Backend) -> None:
    postgres_only(backend)
    rows = asyncio.run(
        fetch(
            backend.url,
            "SELECT p.oid::regprocedure::text AS signature FROM pg_proc p"
            " WHERE p.proname LIKE 'wallet_v1_%'",
        )
    )
    installed = {row["signature"].replace(",", ", ") for row in rows}
    assert installed == {
        re.sub(r"\s+", " ", signature).replace("( ", "(") for signature in WALLET_FUNCTIONS
    }


def test_wrappers_of_0005_behave_like_the_functions(backend: Backend) -> None:
    """A server of the previous release calls the old signatures during a rolling upgrade."""
    postgres_only(backend)

    async def scenario(store: Any) -> None:
        await standard_world(store)
        await add_player(store, "lim", available_minor=10_000, daily_withdraw_limit_minor=1_500)
        await add_session(store, "t-lim", "lim")
        async with store.transaction() as tx:
            old_session = "SELECT * FROM wallet_v1_session($1, $2, $3)"
            almost = NOW_MS + SESSION_TOUCH_INTERVAL_MS - 1
            assert (await tx.fetchrow(old_session, PARTNER, "t1", almost))["code"] == 0
            seen = "SELECT last_seen_at_ms FROM sessions WHERE token = $1"
            assert (await tx.fetchrow(seen, "t1"))["last_seen_at_ms"] == NOW_MS
            await tx.fetchrow(old_session, PARTNER, "t1", almost + 1)
            assert (await tx.fetchrow(seen, "t1"))["last_seen_at_ms"] == almost + 1
            assert (await tx.fetchrow(old_session, PARTNER, "nope", NOW_MS))["code"] == 110

            old_begin = "SELECT * FROM wallet_v1_begin($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            args = (PARTNER, "withdrawal", "t-lim")
            first = await tx.fetchrow(old_begin, *args, "w1", 1_000, "XAG", None, 10**11, NOW_MS)
            assert first["code"] == 0
            over = await tx.fetchrow(old_begin, *args, "w2", 1_000, "XAG", None, 10**11, NOW_MS)
            assert (over["code"], over["description"]) == (122, "Daily withdrawal limit exceeded.")
            # The next UTC day (domain/sessions.py utc_day) starts a new allowance.
            tomorrow = (utc_day(NOW_MS) + 1) * MS_PER_DAY + 10 * MINUTE_MS
            await add_session_in(tx, "t-lim-2", "lim", tomorrow)
            next_day = await tx.fetchrow(
                old_begin, PARTNER, "withdrawal", "t-lim-2", "w3", 1_000, "XAG", None, 10**11,
                tomorrow + SECOND_MS,
            )  # fmt: skip
            assert next_day["code"] == 0

    backend.run(scenario)


async def add_session_in(tx: Any, token: str, player_id: str, now_ms: int) -> None:
    await tx.execute(
        "INSERT INTO sessions (token, player_id, partner_id, game_code, created_at_ms,"
        " last_seen_at_ms, idle_timeout_ms, expires_at_ms, revoked_at_ms)"
        " VALUES ($1, $2, $3, 'demo', $4, $4, 1800000, $5, NULL)",
        token,
        player_id,
        PARTNER,
        now_ms,
        now_ms + MS_PER_DAY,
    )


def test_migration_0006_replaces_the_0005_functions(backend: Backend) -> None:
    """An existing database at 0005 holds the old signatures; 0006 turns them into wrappers."""
    postgres_only(backend)
    name = f"qwallet_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(PG_URL, f"CREATE DATABASE {name}"))
    url = _with_database(PG_URL, name)
    try:
        upgrade(url, "0005")
        # What 0002/0005 left behind, standing in for their PL/pgSQL body: answers 999.
        asyncio.run(
            fetch(
                url,
                "CREATE OR REPLACE FUNCTION wallet_v1_session(p_partner_id integer,"
                " p_token text, p_now_ms bigint, OUT code integer, OUT player_id text,"
                " OUT nickname text, OUT currency text, OUT language text,"
                " OUT available_minor bigint) LANGUAGE plpgsql AS $$ BEGIN code := 999; END $$",
            )
        )
        upgrade(url)
        rows = asyncio.run(fetch(url, "SELECT * FROM wallet_v1_session(1, 'none', 0)"))
        assert rows[0]["code"] == ErrorCode.UNKNOWN_SESSION
        command.downgrade(alembic_config(url), "0005")  # keeps working functions
        rows = asyncio.run(fetch(url, "SELECT * FROM wallet_v1_session(1, 'none', 0)"))
        assert rows[0]["code"] == ErrorCode.UNKNOWN_SESSION
    finally:
        asyncio.run(_admin(PG_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
