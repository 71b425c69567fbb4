"""Operator API keys: bearer keys for ``/api/*`` (shown once, stored as SHA-256)."""

from __future__ import annotations

from qwallet.service.credentials import hash_api_key, new_api_key
from qwallet.store.sql import SqlDatabase


async def create_api_key(db: SqlDatabase, name: str, now_ms: int) -> str:
    key = new_api_key()
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO operator_api_keys (name, key_hash, created_at_ms) VALUES ($1, $2, $3)",
            name,
            hash_api_key(key),
            now_ms,
        )
    return key


async def revoke_api_keys(db: SqlDatabase, name: str, now_ms: int) -> int:
    async with db.transaction() as tx:
        return await tx.execute(
            "UPDATE operator_api_keys SET revoked_at_ms = $1"
            " WHERE name = $2 AND revoked_at_ms IS NULL",
            now_ms,
            name,
        )
