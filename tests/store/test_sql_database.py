"""The ``SqlDatabase`` side of both stores, and the PostgreSQL adapter's own pieces."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from qwallet.domain.errors import WalletError
from qwallet.store.postgres import PostgresStore, asyncpg_dsn, read_sql, split_sql

from .conftest import Backend
from .world import NOW_MS, PARTNER, add_partner


def test_transaction_commits_rolls_back_and_counts_rows(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await add_partner(store, PARTNER, "mm")
        async with store.transaction() as tx:
            for n in range(2, 5):
                assert (
                    await tx.execute(
                        "INSERT INTO partners (id, name, created_at_ms) VALUES ($1, $2, $3)",
                        n,
                        f"p{n}",
                        NOW_MS,
                    )
                    == 1
                )
            assert (
                await tx.execute("UPDATE partners SET client_url = $1 WHERE id > $2", "u", 2) == 2
            )
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.execute("DELETE FROM partners")
                raise RuntimeError("undo")
        async with store.transaction() as tx:
            rows = await tx.fetch("SELECT id, name, client_url FROM partners ORDER BY id")
            assert rows == [
                {"id": 1, "name": "mm", "client_url": None},
                {"id": 2, "name": "p2", "client_url": None},
                {"id": 3, "name": "p3", "client_url": "u"},
                {"id": 4, "name": "p4", "client_url": "u"},
            ]
            assert await tx.fetchrow("SELECT name FROM partners WHERE id = $1", 9) is None
        assert store.dialect in ("sqlite", "postgresql")

    backend.run(scenario)


def test_credentials_operator_keys_and_ping(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await add_partner(store, PARTNER, "mm")
        async with store.transaction() as tx:
            await tx.execute(
                "UPDATE partners SET ip_allow = $1, client_url = $2 WHERE id = $3",
                '["127.0.0.1/32"]',
                "https://game.example/",
                PARTNER,
            )
            for username, revoked in (("JohnDoe", None), ("JohnDoe", NOW_MS), ("Other", None)):
                await tx.execute(
                    "INSERT INTO partner_credentials (partner_id, username, password_hash,"
                    " created_at_ms, revoked_at_ms) VALUES ($1, $2, $3, $4, $5)",
                    PARTNER,
                    username,
                    f"hash-{revoked}",
                    NOW_MS,
                    revoked,
                )
            await tx.execute(
                "INSERT INTO operator_api_keys (name, key_hash, created_at_ms) VALUES ($1, $2, $3)",
                "ops",
                "k1",
                NOW_MS,
            )
        [credential] = await store.find_credential("JohnDoe")
        assert credential.username == "JohnDoe"
        assert credential.password_hash == "hash-None"
        assert credential.partner.id == PARTNER
        assert credential.partner.ip_allow == ("127.0.0.1/32",)
        assert credential.partner.client_url == "https://game.example/"
        assert await store.find_credential("nobody") == []
        assert await store.find_operator_key("k1") == "ops"
        assert await store.find_operator_key("k2") is None
        await store.ping()

    backend.run(scenario)


# -- PostgreSQL adapter pieces that need no server -----------------------------------------------


def test_split_sql_keeps_bodies_strings_and_comments_whole() -> None:
    script = (
        "-- a comment; with a semicolon\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
        "SELECT 'it''s; fine';\n"
        "/* block; comment */ SELECT $tag$ ; $tag$;\n"
        "-- trailing comment only\n"
    )
    assert split_sql(script) == [
        "-- a comment; with a semicolon\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS"
        " $$ SELECT 1; $$",
        "SELECT 'it''s; fine'",
        "/* block; comment */ SELECT $tag$ ; $tag$",
    ]
    statements = split_sql(read_sql("wallet_v1.sql"))
    assert len(statements) == 6
    assert all(s.rstrip().endswith("$$") for s in statements)


def test_asyncpg_dsn() -> None:
    assert asyncpg_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    assert asyncpg_dsn("postgres://u@h/db") == "postgresql://u@h/db"
    assert asyncpg_dsn("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        asyncpg_dsn("sqlite:///x.db")


class _FlakyPool:
    """Stands in for the asyncpg pool and its one connection: fails ``failures`` times, then
    answers."""

    def __init__(self, failures: int, error: type[Exception]) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.warnings = 0  # the adapter counts the server's WARNINGs per connection

    async def acquire(self) -> _FlakyPool:
        return self

    async def release(self, connection: _FlakyPool) -> None:
        pass

    async def expire_connections(self) -> None:
        pass

    def terminate(self) -> None:
        raise AssertionError("no statement here outlives the timeout")

    async def fetchrow(self, sql: str, *args: object) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("simulated")
        return {
            "code": 0,
            "player_id": "p",
            "nickname": "n",
            "currency": "XAG",
            "language": "en",
            "available_minor": 5,
        }


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.SerializationError,
        asyncpg.exceptions.DeadlockDetectedError,
        asyncpg.exceptions.UniqueViolationError,
    ],
)
def test_transient_failures_are_retried_then_answer_134(error: type[Exception]) -> None:
    async def scenario() -> None:
        pool = _FlakyPool(3, error)
        store = PostgresStore(pool, max_attempts=4)
        assert (await store.get_balance(PARTNER, "t", NOW_MS)).available_minor == 5
        assert pool.calls == 4
        pool = _FlakyPool(4, error)
        store = PostgresStore(pool, max_attempts=4)
        with pytest.raises(WalletError) as info:
            await store.get_balance(PARTNER, "t", NOW_MS)
        assert int(info.value.code) == 134
        assert pool.calls == 4

    asyncio.run(scenario())


def test_other_database_errors_are_not_retried() -> None:
    async def scenario() -> None:
        pool = _FlakyPool(1, asyncpg.exceptions.CheckViolationError)
        store = PostgresStore(pool)
        with pytest.raises(asyncpg.exceptions.CheckViolationError):
            await store.get_balance(PARTNER, "t", NOW_MS)
        assert pool.calls == 1

    asyncio.run(scenario())


def test_migration_0002_installs_and_removes_the_functions(
    backend: Backend, tmp_path: Path
) -> None:
    from alembic import command

    from qwallet.store.migrate import alembic_config, upgrade
    from qwallet.store.postgres import WALLET_FUNCTIONS

    from .conftest import PG_URL, _admin, _with_database

    query = "SELECT COUNT(*) AS n FROM pg_proc WHERE proname LIKE 'wallet_v1_%'"
    if backend.name == "sqlite":
        url = f"sqlite:///{tmp_path}/migrations.db"
        upgrade(url)
        command.downgrade(alembic_config(url), "0001")
        upgrade(url)
        return

    name = f"{backend.url.rsplit('/', 1)[1]}_mig"
    asyncio.run(_admin(PG_URL, f"CREATE DATABASE {name}"))
    try:
        url = _with_database(PG_URL, name)

        async def functions() -> int:
            connection = await asyncpg.connect(url)
            try:
                return int(await connection.fetchval(query))
            finally:
                await connection.close()

        # The script's six, and the two wrappers 0006 keeps for the signatures of 0005.
        installed = len(WALLET_FUNCTIONS)
        upgrade(url)
        assert asyncio.run(functions()) == installed == 8
        command.downgrade(alembic_config(url), "0001")
        assert asyncio.run(functions()) == 0
        upgrade(url)
        assert asyncio.run(functions()) == installed
    finally:
        asyncio.run(_admin(PG_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
