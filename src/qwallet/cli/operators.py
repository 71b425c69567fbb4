"""``qwallet operators``: admin console accounts (audited as ``operator.*``)."""

from __future__ import annotations

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.service import operators
from qwallet.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Admin console operator accounts.")


@app.command("create")
def operators_create(name: str, as_json: JsonOption = False) -> None:
    """Create an admin console account; prints its generated password once."""
    issued = with_store(
        Settings.from_env(),
        lambda store: operators.create_operator(store, name, now_ms(), operator=actor()),
    )
    emit(
        as_json,
        {"username": issued.username, "password": issued.password},
        f"operator {issued.username}: password {issued.password}   (shown once)",
    )


@app.command("reset-password")
def operators_reset_password(name: str, as_json: JsonOption = False) -> None:
    """Give an account a new generated password (printed once); its console sign-ins end."""
    issued = with_store(
        Settings.from_env(),
        lambda store: operators.reset_password(store, name, operator=actor(), now_ms=now_ms()),
    )
    emit(
        as_json,
        {"username": issued.username, "password": issued.password},
        f"operator {issued.username}: new password {issued.password}   (shown once)",
    )
