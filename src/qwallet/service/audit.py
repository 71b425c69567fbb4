"""The audit log: every operator action, who and when, with its parameters (never secrets).

``record`` takes an open transaction so that the entry commits or rolls back together with the
action it describes.
"""

from __future__ import annotations

import json
from typing import Any

from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

_SECRET_WORDS = ("password", "secret", "token", "key")


def scrub(details: dict[str, Any]) -> dict[str, Any]:
    """Drop any value whose name suggests a secret: the log is read by every operator."""
    return {
        name: value
        for name, value in details.items()
        if not any(word in name.lower() for word in _SECRET_WORDS)
    }


async def record(
    tx: SqlTransaction,
    operator: str,
    action: str,
    target: str | None,
    details: dict[str, Any] | None,
    now_ms: int,
) -> None:
    await tx.execute(
        "INSERT INTO audit_log (at_ms, operator, action, target, details)"
        " VALUES ($1, $2, $3, $4, $5)",
        now_ms,
        operator,
        action,
        target,
        None if details is None else json.dumps(scrub(details), sort_keys=True),
    )


async def record_now(
    db: SqlDatabase,
    operator: str,
    action: str,
    target: str | None,
    details: dict[str, Any] | None,
    now_ms: int,
) -> None:
    async with db.transaction() as tx:
        await record(tx, operator, action, target, details, now_ms)


async def entries(
    db: SqlDatabase,
    *,
    operator: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Row]:
    """Newest first, optionally filtered."""
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT id, at_ms, operator, action, target, details FROM audit_log"
            " WHERE (CAST($1 AS TEXT) IS NULL OR operator = $1)"
            " AND (CAST($2 AS TEXT) IS NULL OR action = $2)"
            " AND (CAST($3 AS TEXT) IS NULL OR target = $3)"
            " ORDER BY id DESC LIMIT $4 OFFSET $5",
            operator,
            action,
            target,
            limit,
            offset,
        )
