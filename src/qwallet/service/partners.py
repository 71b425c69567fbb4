"""Partners (game studios): creation, credentials with rotation, IP allow-lists."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from qwallet.service.credentials import hash_password, new_password
from qwallet.store.sql import SqlDatabase, SqlTransaction

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


class OperatorError(ValueError):
    """An operator request that cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    partner: str
    username: str
    password: str  # shown once: only its hash is stored


def normalize_cidrs(cidrs: list[str]) -> list[str]:
    try:
        return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in cidrs if c.strip()]
    except ValueError as error:
        raise OperatorError(f"invalid CIDR: {error}") from None


async def _partner_id(tx: SqlTransaction, name: str) -> int:
    row = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", name)
    if row is None:
        raise OperatorError(f"no partner named {name!r}")
    return int(row["id"])


async def _issue(tx: SqlTransaction, partner_id: int, name: str, now_ms: int) -> IssuedCredential:
    password = new_password()
    await tx.execute(
        "INSERT INTO partner_credentials (partner_id, username, password_hash, created_at_ms)"
        " VALUES ($1, $2, $3, $4)",
        partner_id,
        name,
        hash_password(password),
        now_ms,
    )
    return IssuedCredential(name, name, password)


async def create_partner(
    db: SqlDatabase,
    name: str,
    now_ms: int,
    *,
    ip_allow: list[str] | None = None,
    client_url: str | None = None,
    callback_url: str | None = None,
    query_url: str | None = None,
) -> IssuedCredential:
    """Create a partner; its username is its name, its password is returned once."""
    if not _NAME.fullmatch(name):
        raise OperatorError(
            "partner name must be 1-63 characters of a-z, 0-9, '_', '.', '-',"
            " starting with a letter or digit"
        )
    cidrs = normalize_cidrs(ip_allow or [])
    async with db.transaction() as tx:
        if await tx.fetchrow("SELECT id FROM partners WHERE name = $1", name):
            raise OperatorError(f"a partner named {name!r} already exists")
        await tx.execute(
            "INSERT INTO partners (name, ip_allow, client_url, callback_url, query_url,"
            " created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            name,
            json.dumps(cidrs) if cidrs else None,
            client_url,
            callback_url,
            query_url,
            now_ms,
        )
        return await _issue(tx, await _partner_id(tx, name), name, now_ms)


# A wrong password is checked against this many hashes whatever the partner (padding with a
# dummy hash, qwallet.api.auth), so that timing reveals neither the partner nor a rotation in
# progress. Rotation therefore keeps at most this many credentials active: the overlap needs two.
MAX_ACTIVE_CREDENTIALS = 2


async def rotate_credentials(db: SqlDatabase, name: str, now_ms: int) -> IssuedCredential:
    """Issue a new password; the old ones stay valid until ``revoke_old_credentials``.

    Refused while the partner already has ``MAX_ACTIVE_CREDENTIALS`` active credentials.
    """
    async with db.transaction() as tx:
        partner_id = await _partner_id(tx, name)
        if db.dialect == "postgresql":
            # Two rotations at once must not both see room for one more (READ COMMITTED).
            await tx.fetchrow("SELECT id FROM partners WHERE id = $1 FOR UPDATE", partner_id)
        row = await tx.fetchrow(
            "SELECT COUNT(*) AS active FROM partner_credentials"
            " WHERE partner_id = $1 AND revoked_at_ms IS NULL",
            partner_id,
        )
        active = int(row["active"]) if row is not None else 0
        if active >= MAX_ACTIVE_CREDENTIALS:
            raise OperatorError(
                f"partner {name!r} already has {active} active credentials (at most"
                f" {MAX_ACTIVE_CREDENTIALS}): revoke the old credentials first"
            )
        return await _issue(tx, partner_id, name, now_ms)


async def revoke_old_credentials(db: SqlDatabase, name: str, now_ms: int) -> int:
    """Revoke every credential of the partner except the newest; returns how many."""
    async with db.transaction() as tx:
        partner_id = await _partner_id(tx, name)
        return await tx.execute(
            "UPDATE partner_credentials SET revoked_at_ms = $1"
            " WHERE partner_id = $2 AND revoked_at_ms IS NULL AND id <> ("
            " SELECT MAX(id) FROM partner_credentials WHERE partner_id = $2)",
            now_ms,
            partner_id,
        )


async def set_allow_list(db: SqlDatabase, name: str, cidrs: list[str]) -> list[str]:
    normalized = normalize_cidrs(cidrs)
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE partners SET ip_allow = $1 WHERE id = $2",
            json.dumps(normalized) if normalized else None,
            await _partner_id(tx, name),
        )
    return normalized


async def list_partners(db: SqlDatabase) -> list[dict[str, object]]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT p.name, p.ip_allow, p.client_url, p.callback_url, p.query_url,"
            " p.created_at_ms, (SELECT COUNT(*) FROM partner_credentials c"
            "  WHERE c.partner_id = p.id AND c.revoked_at_ms IS NULL) AS active_credentials"
            " FROM partners p ORDER BY p.name"
        )
    return [
        {
            "name": row["name"],
            "username": row["name"],
            "ipAllow": json.loads(row["ip_allow"]) if row["ip_allow"] else [],
            "clientUrl": row["client_url"],
            "callbackUrl": row["callback_url"],
            "queryUrl": row["query_url"],
            "activeCredentials": int(row["active_credentials"]),
            "createdAtMs": int(row["created_at_ms"]),
        }
        for row in rows
    ]
