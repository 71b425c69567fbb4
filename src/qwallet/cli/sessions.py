"""``qwallet sessions``: game sessions created by the operator (audited as ``session.create``)."""

from __future__ import annotations

from typing import Annotated

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.service import sessions
from qwallet.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Game sessions.")


@app.command("create")
def sessions_create(
    player: Annotated[str, typer.Option("--player", help="playerId")],
    partner: Annotated[str, typer.Option("--partner", help="partner name")],
    game: Annotated[str, typer.Option("--game", help="game code")] = sessions.DEFAULT_GAME,
    as_json: JsonOption = False,
) -> None:
    """Create a game session: prints token, launchUrl, expiresAt."""
    settings = Settings.from_env()
    issued = with_store(
        settings,
        lambda store: sessions.create_session(
            store,
            player_id=player,
            partner=partner,
            now_ms=now_ms(),
            idle_timeout_s=settings.session_idle_timeout_s,
            lifetime_s=settings.session_lifetime_s,
            game_code=game,
            operator=actor(),
        ),
    )
    payload = issued.as_json()
    emit(as_json, payload, "\n".join(f"{k}: {v}" for k, v in payload.items()))
