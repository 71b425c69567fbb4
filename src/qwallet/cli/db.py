"""``qwallet db``: the database schema."""

from __future__ import annotations

import typer

from qwallet.settings import Settings
from qwallet.store import migrate

app = typer.Typer(no_args_is_help=True, help="Database schema.")


@app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema."""
    migrate.upgrade(Settings.from_env().database_url)
    typer.echo("database is up to date")


@app.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    migrate.current(Settings.from_env().database_url)
