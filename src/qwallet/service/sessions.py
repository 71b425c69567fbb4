"""Game sessions (spec §2.1): a random token bound to player, partner and game.

A session created by an operator (the CLI, ``POST /api/sessions``) is an operator use case and
is audited as ``session.create`` in its own transaction (target: the player; the token, a
secret, is never logged). A player starting a game from the lobby and the demo seed create
sessions without an operator (``operator=None``): those are not operator actions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from qwallet.service import audit
from qwallet.service.partners import OperatorError
from qwallet.store.sql import SqlDatabase, SqlTransaction

DEFAULT_GAME = "default"


@dataclass(frozen=True, slots=True)
class IssuedSession:
    token: str
    launch_url: str | None
    expires_at_ms: int

    def as_json(self) -> dict[str, str | None]:
        return {
            "token": self.token,
            "launchUrl": self.launch_url,
            "expiresAt": iso8601(self.expires_at_ms),
        }


def iso8601(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def launch_url(client_url: str | None, token: str, language: str, currency: str) -> str | None:
    if not client_url:
        return None
    separator = "&" if "?" in client_url else "?"
    query = urlencode({"token": token, "language": language, "currency": currency})
    return f"{client_url}{separator}{query}"


async def create_session(
    db: SqlDatabase,
    *,
    player_id: str,
    partner: str,
    now_ms: int,
    idle_timeout_s: int,
    lifetime_s: int,
    game_code: str = DEFAULT_GAME,
    language: str | None = None,
    token: str | None = None,
    operator: str | None = None,
) -> IssuedSession:
    """Create a session; ``token`` is only for fixed demo tokens (it refreshes that session)."""
    if not 1 <= len(game_code) <= 64:
        raise OperatorError("gameCode must be 1-64 characters")
    token = token or str(uuid.uuid4())
    expires_at_ms = now_ms + lifetime_s * 1000
    async with db.transaction() as tx:
        player = await tx.fetchrow(
            "SELECT currency, language FROM players WHERE id = $1", player_id
        )
        if player is None:
            raise OperatorError(f"no player {player_id}")
        partner_row = await tx.fetchrow(
            "SELECT id, client_url FROM partners WHERE name = $1", partner
        )
        if partner_row is None:
            raise OperatorError(f"no partner named {partner!r}")
        await tx.execute("DELETE FROM sessions WHERE token = $1", token)
        await tx.execute(
            "INSERT INTO sessions (token, player_id, partner_id, game_code, created_at_ms,"
            " last_seen_at_ms, idle_timeout_ms, expires_at_ms)"
            " VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
            token,
            player_id,
            partner_row["id"],
            game_code,
            now_ms,
            idle_timeout_s * 1000,
            expires_at_ms,
        )
        if operator is not None:
            details = {"partner": partner, "gameCode": game_code, "expiresAtMs": expires_at_ms}
            await audit.record(tx, operator, "session.create", player_id, details, now_ms)
    return IssuedSession(
        token,
        launch_url(
            partner_row["client_url"], token, language or player["language"], player["currency"]
        ),
        expires_at_ms,
    )


async def revoke_player_sessions_in(tx: SqlTransaction, player_id: str, now_ms: int) -> int:
    """Revoke every game session of the player (sign-out, block); returns how many.

    A revoked token is refused for ``verifySession``, ``getBalance``, ``withdraw`` and
    ``deposit`` (110), but confirm and rollback still accept it, like an expired one: funds
    already held must stay releasable by the partner's retries (spec §1.4).
    """
    return await tx.execute(
        "UPDATE sessions SET revoked_at_ms = $1 WHERE player_id = $2 AND revoked_at_ms IS NULL",
        now_ms,
        player_id,
    )


async def revoke_player_sessions(db: SqlDatabase, player_id: str, now_ms: int) -> int:
    async with db.transaction() as tx:
        return await revoke_player_sessions_in(tx, player_id, now_ms)


async def revoke_session(db: SqlDatabase, token: str, now_ms: int) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE sessions SET revoked_at_ms = $1 WHERE token = $2 AND revoked_at_ms IS NULL",
            now_ms,
            token,
        )
