"""What the player pages (``qwallet.web.player``) read: the signed-in player, the games of the
lobby, one game, and a partner's payment methods. The pages hold no SQL."""

from __future__ import annotations

from qwallet.store.sql import Row, SqlDatabase


async def player_for_session(db: SqlDatabase, player_id: str) -> Row | None:
    """The player a session cookie names, with the ``web_generation`` the cookie must match."""
    async with db.transaction() as tx:
        return await tx.fetchrow(
            "SELECT id, nickname, currency, language, status, available_minor,"
            " web_generation FROM players WHERE id = $1",
            player_id,
        )


async def lobby_games(db: SqlDatabase) -> list[Row]:
    """The partners with a game client to open, by name."""
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT name, display_name FROM partners"
            " WHERE client_url IS NOT NULL AND client_url <> '' ORDER BY name"
        )


async def game(db: SqlDatabase, name: str) -> Row | None:
    async with db.transaction() as tx:
        return await tx.fetchrow(
            "SELECT name, display_name, client_url, payment_currency FROM partners WHERE name = $1",
            name,
        )


async def partner_methods_row(db: SqlDatabase, partner_id: int) -> Row | None:
    """The partner's ``sandbox`` flag and ``payment_methods`` list."""
    async with db.transaction() as tx:
        return await tx.fetchrow(
            "SELECT sandbox, payment_methods FROM partners WHERE id = $1", partner_id
        )
