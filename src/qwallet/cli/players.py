"""``qwallet players``: players, their wallets and sign-ins.

Each change is one use case of ``qwallet.service.players`` / ``player_logins`` with its audit
entry in the same transaction (actor ``cli:<OS user>``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, operator_amount, with_store
from qwallet.service import players
from qwallet.service.player_logins import set_player_password
from qwallet.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Players and wallets.")


@app.command("create")
def players_create(
    currency: Annotated[str, typer.Option(help="Wallet currency code, e.g. XAG.")],
    nickname: Annotated[str | None, typer.Option()] = None,
    balance: Annotated[str, typer.Option(help="Initial balance (an operator adjustment).")] = "0",
    language: Annotated[str, typer.Option()] = "en",
    daily_limit: Annotated[
        str | None, typer.Option(help="Responsible-gaming limit on withdrawals per UTC day.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a player with a wallet in one currency; prints the playerId."""
    settings = Settings.from_env()
    wallet_currency = settings.currency_registry.get(currency.upper())
    if wallet_currency is None:
        raise typer.BadParameter(
            f"unknown currency {currency}; configured: {settings.currency_registry.codes()}"
        )
    balance_minor = operator_amount(balance, wallet_currency)
    limit_minor = None if daily_limit is None else operator_amount(daily_limit, wallet_currency)
    player_id = with_store(
        settings,
        lambda store: players.create_player(
            store,
            wallet_currency,
            now_ms(),
            nickname=nickname,
            language=language,
            balance_minor=balance_minor,
            daily_withdraw_limit_minor=limit_minor,
            operator=actor(),
        ),
    )
    emit(as_json, {"playerId": player_id}, player_id)


@app.command("show")
def players_show(player_id: str, as_json: JsonOption = False) -> None:
    """Show a player's wallet."""
    settings = Settings.from_env()
    currencies = {c.code: c for c in settings.currencies}
    info = with_store(settings, lambda store: players.show_player(store, currencies, player_id))
    emit(as_json, info, "\n".join(f"{k}: {v}" for k, v in info.items()))


ReasonOption = Annotated[str | None, typer.Option(help="Why (recorded in the audit log).")]


def _set_blocked(player_id: str, blocked: bool, reason: str | None, as_json: bool) -> None:
    with_store(
        Settings.from_env(),
        lambda store: players.set_blocked(
            store, player_id, blocked, now_ms=now_ms(), operator=actor(), reason=reason
        ),
    )
    status = "blocked" if blocked else "active"
    emit(as_json, {"playerId": player_id, "status": status}, f"{player_id} {status}")


@app.command("block")
def players_block(player_id: str, reason: ReasonOption = None, as_json: JsonOption = False) -> None:
    """Block a player: its game tokens and sign-ins are revoked (110); sessions issued while
    blocked are refused with 112; confirm and rollback of money already held still work."""
    _set_blocked(player_id, True, reason, as_json)


@app.command("unblock")
def players_unblock(
    player_id: str, reason: ReasonOption = None, as_json: JsonOption = False
) -> None:
    """Unblock a player (revoked tokens stay revoked: the player signs in and plays again)."""
    _set_blocked(player_id, False, reason, as_json)


@app.command("adjust")
def players_adjust(
    player_id: str,
    amount: Annotated[str, typer.Option(help="Signed amount: 10.00 credits, -10.00 debits.")],
    reason: Annotated[str, typer.Option(help="Why (mandatory, recorded).")],
    currency: Annotated[str, typer.Option()] = "XAG",
    operator: Annotated[
        str | None, typer.Option(help="Who is adjusting (default: cli:<OS user>).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Manual balance adjustment: a ledger entry against the operator account."""
    settings = Settings.from_env()
    wallet_currency = settings.currency_registry.get(currency.upper())
    if wallet_currency is None:
        raise typer.BadParameter(f"unknown currency {currency}")
    minor = operator_amount(amount, wallet_currency, allow_negative=True)
    who = operator or actor()
    adjustment_id = with_store(
        settings,
        lambda store: players.adjust_balance(
            store, player_id, wallet_currency, minor, reason, who, now_ms()
        ),
    )
    emit(as_json, {"adjustmentId": adjustment_id, "playerId": player_id}, adjustment_id)


@app.command("set-password")
def players_set_password(
    player_id: str,
    username: Annotated[str, typer.Option(help="Sign-in name for the player pages.")],
    as_json: JsonOption = False,
) -> None:
    """Give a player a sign-in for the lobby; prints the generated password (shown once)."""
    password = with_store(
        Settings.from_env(),
        lambda store: set_player_password(store, player_id, username, now_ms(), operator=actor()),
    )
    emit(
        as_json,
        {"playerId": player_id, "username": username, "password": password},
        f"player {player_id}: username {username} password {password}",
    )
