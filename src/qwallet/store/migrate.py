"""Schema migrations (Alembic) for both databases: ``qwallet db upgrade`` and ``serve`` use this."""

from __future__ import annotations

from alembic import command
from alembic.config import Config


def alembic_url(database_url: str) -> str:
    """The SQLAlchemy URL for a ``QWALLET_DATABASE_URL`` (PostgreSQL goes through asyncpg)."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url[len(prefix) :]
    return database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "qwallet.store:migrations")
    config.set_main_option("sqlalchemy.url", alembic_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; creates every table on an empty database."""
    if database_url.startswith("sqlite:///"):
        from qwallet.store.sqlite import sqlite_path

        sqlite_path(database_url).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url), verbose=False)
