"""The audit log: every operator action, who and when, with its parameters (never secrets).

``record`` takes the open transaction of the change it describes, so that the entry commits or
rolls back together with it: there is no way to write an entry on its own transaction, and an
operator use case in ``qwallet.service`` (the only place that calls ``record``) owns its
transaction from the first read to the audit row.

Who did it (the ``operator`` column) is named by the entry point that called the use case:

- the admin console: the signed-in operator's username (``admin``);
- the CLI: ``cli:<OS user>`` (``cli_actor``), ``cli`` when the OS user cannot be found;
- the operator API: ``api-key:<key name>`` (``api_key_actor``);
- anything that is none of these (the demo seed, tests, the benchmark's set-up): ``system``.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from qwallet.service.where import Where
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

_SECRET_WORDS = ("password", "secret", "token", "key")
# The actor of a change that no operator made (``create_player``'s default, the demo seed's
# internal steps, test fixtures).
SYSTEM = "system"
CLI = "cli"
MAX_ACTOR_CHARS = 128


def cli_actor() -> str:
    """``cli:<OS user>``: the command line has no sign-in, the OS account is what we know."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no passwd entry and no LOGNAME/USER (a bare container)
        return CLI
    return f"{CLI}:{user}"[:MAX_ACTOR_CHARS] if user else CLI


def api_key_actor(key_name: str) -> str:
    """The operator API's actor: the name the key was created with."""
    return f"api-key:{key_name}"[:MAX_ACTOR_CHARS]


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
    """Write one entry inside ``tx``, the transaction of the change it describes."""
    if not operator:
        raise ValueError("an audit entry needs an actor")
    await tx.execute(
        "INSERT INTO audit_log (at_ms, operator, action, target, details)"
        " VALUES ($1, $2, $3, $4, $5)",
        now_ms,
        operator,
        action,
        target,
        None if details is None else json.dumps(scrub(details), sort_keys=True),
    )


async def entries(
    db: SqlDatabase,
    *,
    operator: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Row]:
    """Newest first, optionally filtered, the ``limit`` entries with an id below ``before_id``
    (a keyset page). Cost: a backward range of the primary key, or of ``ix_audit_log_operator``
    / ``…_action`` / ``…_target`` when filtered: the page's rows, not the log's length."""
    where = Where()
    if operator is not None:
        where.add("operator = ?", operator)
    if action is not None:
        where.add("action = ?", action)
    if target is not None:
        where.add("target = ?", target)
    if before_id is not None:
        where.add("id < ?", before_id)
    async with db.transaction() as tx:
        return await tx.fetch(
            f"SELECT id, at_ms, operator, action, target, details FROM audit_log{where.sql}"
            f" ORDER BY id DESC LIMIT {where.next_placeholder()}",
            *where.args,
            limit,
        )
