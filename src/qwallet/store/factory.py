"""Open the store a ``QWALLET_DATABASE_URL`` names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from qwallet.store.port import WalletStore
from qwallet.store.sql import SqlDatabase

if TYPE_CHECKING:
    from qwallet.settings import Settings


class Store(WalletStore, SqlDatabase, Protocol):
    """Both faces of an adapter: the wallet hot path and plain SQL for the operator side."""


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


async def open_store(settings: Settings) -> Store:
    url = settings.database_url
    if is_postgres(url):
        from qwallet.store.postgres import PostgresStore

        store: Store = await PostgresStore.open(
            url,
            pool_min=settings.pg_pool_min,
            pool_max=settings.pg_pool_max,
            statement_cache_size=settings.pg_statement_cache_size,
        )
        return store
    from qwallet.store.sqlite import SqliteStore, sqlite_path

    return SqliteStore(sqlite_path(url))
