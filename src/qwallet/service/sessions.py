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
# Pruning: rows per transaction, and transactions per call (one call per resolver pass).
PRUNE_BATCH = 1_000
PRUNE_MAX_BATCHES = 20


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
    """Revoke every live game session of the player (sign-out, block); returns how many.

    A revoked token is refused for ``verifySession``, ``getBalance``, ``withdraw`` and
    ``deposit`` (110), but confirm and rollback still accept it, like an expired one: funds
    already held must stay releasable by the partner's retries (spec §1.4). An expired session
    is left as it is: it already answers 111 to the first four and the same as a revoked one to
    confirm and rollback, so revoking it would change nothing.

    Cost: one range of ``ix_sessions_player_live`` (the player's unrevoked sessions, by expiry,
    from now): the player's live sessions, not their history.
    """
    return await tx.execute(
        "UPDATE sessions SET revoked_at_ms = $1"
        " WHERE player_id = $2 AND revoked_at_ms IS NULL AND expires_at_ms > $1",
        now_ms,
        player_id,
    )


async def prune_sessions(
    db: SqlDatabase,
    *,
    now_ms: int,
    retention_ms: int,
    batch: int = PRUNE_BATCH,
    max_batches: int = PRUNE_MAX_BATCHES,
) -> int:
    """Delete sessions that expired more than ``retention_ms`` ago; returns how many.

    ``retention_ms`` must cover the partner's retries of confirm and rollback, which accept an
    expired or revoked token (the hold resolver's window, 49 h by default: a withdrawal is made
    before its session expires and retried for 48 h). A revoked session goes at the same time:
    it was revoked before it expired. Each batch is its own short transaction of at most
    ``batch`` rows, found by ``ix_sessions_expires``; at most ``max_batches`` per call, so one
    call is bounded and a backlog (the first run on an old database) is worked off over several.
    Cost per batch: O(log n + batch), whatever the table holds.
    """
    cutoff_ms = now_ms - retention_ms
    deleted = 0
    for _ in range(max_batches):
        async with db.transaction() as tx:
            removed = await tx.execute(
                "DELETE FROM sessions WHERE token IN (SELECT token FROM sessions"
                " WHERE expires_at_ms < $1 ORDER BY expires_at_ms LIMIT $2)",
                cutoff_ms,
                batch,
            )
        deleted += removed
        if removed < batch:
            break
    return deleted


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
