"""The migrations produce exactly the schema the metadata describes, on both databases."""

from __future__ import annotations

import warnings
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.ext.asyncio import create_async_engine

from qwallet.store.migrate import alembic_url
from qwallet.store.schema import metadata
from tests.conftest import fresh_database_url


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def test_migrated_schema_matches_metadata(backend: str, tmp_path: Path) -> None:
    for url in fresh_database_url(backend, tmp_path):
        if backend == "sqlite":
            engine = create_engine(url, poolclass=pool.NullPool)
            with engine.connect() as connection, warnings.catch_warnings():
                # SQLAlchemy does not reflect SQLite's expression indexes (it warns and skips
                # them), so the comparison cannot see this one: its SQL is checked instead.
                warnings.filterwarnings(
                    "ignore",
                    "Skipped unsupported reflection of expression-based index ix_players_nickname",
                )
                warnings.filterwarnings(
                    "ignore",
                    "autogenerate skipping metadata-specified expression-based index"
                    " 'ix_players_nickname'",
                )
                differences = _differences(connection)
                (created,) = connection.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'ix_players_nickname'"
                ).one()
            engine.dispose()
            assert created == "CREATE INDEX ix_players_nickname ON players (lower(nickname), id)"
        else:
            import asyncio

            async def compare(url: str) -> list[object]:
                async_engine = create_async_engine(alembic_url(url), poolclass=pool.NullPool)
                async with async_engine.connect() as connection:
                    found = await connection.run_sync(_differences)
                await async_engine.dispose()
                return found

            differences = asyncio.run(compare(url))
        assert differences == []
