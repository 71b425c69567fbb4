"""What the migration tests share: scratch databases, plain SQL on either kind, and the
statements docs/operations.md gives an operator to run before a large upgrade."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from tests.conftest import _pg_admin, _pg_url_for, require_postgres

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


@contextlib.contextmanager
def postgres_databases(count: int) -> Iterator[list[str]]:
    """``count`` empty PostgreSQL databases (not migrated), dropped afterwards."""
    require_postgres()
    names = [f"qwallet_test_{secrets.token_hex(6)}" for _ in range(count)]
    for name in names:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield [_pg_url_for(name) for name in names]
    finally:
        for name in names:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def empty_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of ``kind`` (``sqlite`` or ``postgres``), not migrated."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'qwallet.db'}"
        return
    with postgres_databases(1) as (url,):
        yield url


def _sqlite(url: str, statements: list[str]) -> list[list[tuple[object, ...]]]:
    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        results = [connection.execute(sql).fetchall() for sql in statements]
        connection.commit()
        return results
    finally:
        connection.close()


async def _pg(url: str, statements: list[str]) -> list[list[tuple[object, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        return [[tuple(row) for row in await connection.fetch(sql)] for sql in statements]
    finally:
        await connection.close()


def run(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    """Each statement on its own connection's autocommit (SQLite: one commit at the end)."""
    if url.startswith("sqlite"):
        return _sqlite(url, list(statements))
    return asyncio.run(_pg(url, list(statements)))


def documented_lines(marker: str) -> list[str]:
    """The non-blank lines after ``marker`` in docs/operations.md, up to the end of its block."""
    text = OPERATIONS.read_text()
    block = text[text.index(marker) :]
    block = block[: block.index("```")]
    return [line for line in block.splitlines()[1:] if line.strip()]


async def schema(url: str, *, partitions_of: str | None = None) -> dict[str, object]:
    """The application schema's indexes and constraints and how many indexes are invalid;
    with ``partitions_of``, also the definitions (names left out) of the indexes of that
    table's partitions, which PostgreSQL names after the partition."""
    connection = await asyncpg.connect(url)
    try:
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " ORDER BY indexname"
        )
        constraints = await connection.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY conname"
        )
        partitions = []
        if partitions_of is not None:
            partitions = await connection.fetch(
                "SELECT tablename, replace(indexdef, indexname, '') AS definition"
                " FROM pg_indexes WHERE schemaname = 'qwallet_partitions'"
                " AND tablename LIKE $1 ORDER BY 1, 2",
                f"{partitions_of}%",
            )
        invalid = await connection.fetchval("SELECT COUNT(*) FROM pg_index WHERE NOT indisvalid")
    finally:
        await connection.close()
    found: dict[str, object] = {
        "indexes": [(r["indexname"], r["indexdef"]) for r in indexes],
        "constraints": [(r["conname"], r["definition"]) for r in constraints],
        "invalid": invalid,
    }
    if partitions_of is not None:
        found["partition indexes"] = [(r["tablename"], r["definition"]) for r in partitions]
    return found
