"""Operator API keys: bearer keys for ``/api/*`` (shown once, stored as SHA-256).

Creating and revoking keys are operator use cases: each one transaction with its audit entry.
"""

from __future__ import annotations

import re

from qwallet.service import audit
from qwallet.service.credentials import hash_api_key, new_api_key
from qwallet.service.partners import OperatorError
from qwallet.store.sql import SqlDatabase

# The name appears in the audit log as ``api-key:<name>`` for every change made with the key.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise OperatorError(
            "API key name must be 1-64 characters of letters, digits, '_', '.', '@', '-',"
            " starting with a letter or digit"
        )
    return name


async def create_api_key(
    db: SqlDatabase, name: str, now_ms: int, *, operator: str = audit.SYSTEM
) -> str:
    """A new key named ``name`` (several keys may share a name); returned once."""
    key = new_api_key()
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO operator_api_keys (name, key_hash, created_at_ms) VALUES ($1, $2, $3)",
            check_name(name),
            hash_api_key(key),
            now_ms,
        )
        await audit.record(tx, operator, "api_key.create", name, {}, now_ms)
    return key


async def revoke_api_keys(
    db: SqlDatabase, name: str, now_ms: int, *, operator: str = audit.SYSTEM
) -> int:
    """Revoke every active key named ``name``; returns how many (0 changes nothing and is
    still recorded, so that the attempt shows in the log)."""
    async with db.transaction() as tx:
        count = await tx.execute(
            "UPDATE operator_api_keys SET revoked_at_ms = $1"
            " WHERE name = $2 AND revoked_at_ms IS NULL",
            now_ms,
            name,
        )
        await audit.record(tx, operator, "api_key.revoke", name, {"revoked": count}, now_ms)
    return count
