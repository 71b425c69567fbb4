"""Schema migrations (Alembic) for both databases: ``qwallet db upgrade`` and ``serve`` use this.

Every command line run and every server start calls ``upgrade``. On a database already at the
head revision that is one read of ``alembic_version``: Alembic (and SQLAlchemy under it, about
0.8 s of imports and script loading, as long as the rest of a short command) is only loaded
when there is something to migrate.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*"([^"]*)"', re.MULTILINE)


def alembic_url(database_url: str) -> str:
    """The SQLAlchemy URL for a ``QWALLET_DATABASE_URL`` (PostgreSQL goes through asyncpg)."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url[len(prefix) :]
    return database_url


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "qwallet.store:migrations")
    config.set_main_option("sqlalchemy.url", alembic_url(database_url).replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    """The revision no migration builds on, read from the migration files as Alembic reads
    their ``revision`` / ``down_revision``; exactly one (the chain is linear)."""
    revisions: set[str] = set()
    below: set[str] = set()
    for script in resources.files("qwallet.store.migrations.versions").iterdir():
        if not script.name.endswith(".py") or script.name.startswith("__"):
            continue
        found = dict((key, value) for key, value in _REVISION.findall(script.read_text("utf-8")))
        revisions.add(found["revision"])
        if found.get("down_revision"):
            below.add(found["down_revision"])
    heads = revisions - below
    assert len(heads) == 1, heads
    return heads.pop()


def stored_revision(database_url: str) -> str | None:
    """What ``alembic_version`` holds, or None when it cannot say (no file, no table yet, the
    database unreachable): then Alembic runs and reports or fixes whatever it is."""
    try:
        if database_url.startswith("sqlite:///"):
            from qwallet.store.sqlite import sqlite_path

            path = sqlite_path(database_url)
            if not path.is_file():
                return None
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            return None if row is None else str(row[0])
        if database_url.startswith(("postgresql://", "postgres://")):
            return asyncio.run(_postgres_revision(database_url))
    except Exception:  # any doubt: the full path decides (and reports the error)
        return None
    return None


async def _postgres_revision(database_url: str) -> str | None:
    from qwallet.store.postgres import connect

    connection = await connect(database_url, timeout_s=10)
    try:
        value = await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    return None if value is None else str(value)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; creates every table on an empty database."""
    if revision == "head" and stored_revision(database_url) == head_revision():
        return
    from alembic import command

    if database_url.startswith("sqlite:///"):
        from qwallet.store.sqlite import sqlite_path

        sqlite_path(database_url).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    from alembic import command

    command.current(alembic_config(database_url), verbose=False)
