"""Alembic environment: runs the migrations on SQLite (stdlib driver) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.ext.asyncio import create_async_engine

from qwallet.store.postgres import connect
from qwallet.store.schema import metadata

config = context.config
_url = config.get_main_option("sqlalchemy.url")
assert _url is not None
url: str = _url


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several server processes may start at once: one migrates, the others wait.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7240917)")
        context.run_migrations()


async def run_async() -> None:
    # The store connects, not SQLAlchemy: its URL parser cannot hold a multi-host URL
    # (postgresql://h1:5432,h2:5432/qwallet?target_session_attrs=read-write), and asyncpg's
    # own multi-host connect spends its one timeout on a first host that hangs; the store's
    # tries the hosts one at a time, as the server's pool does.
    engine = create_async_engine(
        "postgresql+asyncpg://",
        poolclass=pool.NullPool,
        async_creator=lambda: connect(url, timeout_s=10),
    )
    async with engine.connect() as connection:
        await connection.run_sync(run_with)
    await engine.dispose()


if url.startswith("postgresql"):
    asyncio.run(run_async())
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_with(connection)
    engine.dispose()
