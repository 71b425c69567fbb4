"""Player sign-in credentials (``player_logins``): one username and scrypt hash per player.

No web imports here: the CLI (``qwallet players set-password``) and the demo seed use it too.

``players.web_generation`` ends browser sign-ins on the server side: the session cookie carries
the generation read at sign-in, every page compares it with the row, and sign-out, a password
change and a block bump it, so a cookie copied before any of them stops working at once.
"""

from __future__ import annotations

import asyncio
import re

from qwallet.service import audit
from qwallet.service.credentials import DUMMY_HASH, hash_password, new_password, verify_password
from qwallet.service.partners import OperatorError
from qwallet.service.sessions import revoke_player_sessions_in
from qwallet.store.sql import SqlDatabase

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MAX_PASSWORD_CHARS = 256


async def set_player_password(
    db: SqlDatabase,
    player_id: str,
    username: str,
    now_ms: int,
    *,
    password: str | None = None,
    operator: str = audit.SYSTEM,
) -> str:
    """Give the player a sign-in (replacing any previous one); returns the password, once.
    Audited as ``player.set_password`` (the username, never the password)."""
    if not USERNAME.fullmatch(username):
        raise OperatorError(
            "username must be 1-64 characters of letters, digits, '_', '.', '@', '-'"
        )
    password = password or new_password()
    if not 8 <= len(password) <= MAX_PASSWORD_CHARS:
        raise OperatorError(f"password must be 8-{MAX_PASSWORD_CHARS} characters")
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.transaction() as tx:
        if await tx.fetchrow("SELECT id FROM players WHERE id = $1", player_id) is None:
            raise OperatorError(f"no player {player_id}")
        taken = await tx.fetchrow(
            "SELECT player_id FROM player_logins WHERE username = $1 AND player_id <> $2",
            username,
            player_id,
        )
        if taken is not None:
            raise OperatorError(f"username {username!r} is taken")
        await tx.execute("DELETE FROM player_logins WHERE player_id = $1", player_id)
        # A new password ends every browser sign-in made with the old one.
        await tx.execute(
            "UPDATE players SET web_generation = web_generation + 1 WHERE id = $1", player_id
        )
        await tx.execute(
            "INSERT INTO player_logins (player_id, username, password_hash, created_at_ms)"
            " VALUES ($1, $2, $3, $4)",
            player_id,
            username,
            password_hash,
            now_ms,
        )
        await audit.record(
            tx, operator, "player.set_password", player_id, {"username": username}, now_ms
        )
    return password


async def authenticate(db: SqlDatabase, username: str, password: str) -> str | None:
    """The playerId for a correct username and password, else None.

    An unknown username is checked against a dummy hash, so timing does not tell which part was
    wrong. scrypt runs in a thread: it takes tens of milliseconds of CPU by design.
    """
    if len(username) > 64 or len(password) > MAX_PASSWORD_CHARS:
        return None
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT player_id, password_hash FROM player_logins WHERE username = $1", username
        )
    stored = DUMMY_HASH if row is None else str(row["password_hash"])
    ok = await asyncio.to_thread(verify_password, password.encode("utf-8"), stored)
    return str(row["player_id"]) if ok and row is not None else None


async def web_generation(db: SqlDatabase, player_id: str) -> int | None:
    """The player's current sign-in generation (stored in the cookie at sign-in)."""
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT web_generation FROM players WHERE id = $1", player_id)
    return None if row is None else int(row["web_generation"])


async def sign_out(db: SqlDatabase, player_id: str, now_ms: int) -> None:
    """End every browser sign-in of the player and revoke their game session tokens."""
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE players SET web_generation = web_generation + 1 WHERE id = $1", player_id
        )
        await revoke_player_sessions_in(tx, player_id, now_ms)
