"""What every command module shares: the store runner, ``--json`` output, the actor."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from qwallet.clock import SystemClock
from qwallet.domain.errors import WalletError
from qwallet.domain.money import Currency, parse_operator_amount
from qwallet.service import audit
from qwallet.service.partners import OperatorError
from qwallet.settings import Settings
from qwallet.store import migrate
from qwallet.store.factory import Store, open_store

T = TypeVar("T")

console = Console(stderr=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def actor() -> str:
    """Who the audit log says made a change from the command line: ``cli:<OS user>``."""
    return audit.cli_actor()


def emit(as_json: bool, payload: dict[str, Any], human: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        typer.echo(human)


def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Migrate, open the store, run ``work``, close; an ``OperatorError`` exits 2 with its
    message on stderr (and nothing on stdout)."""
    migrate.upgrade(settings.database_url)

    async def run() -> T:
        store = await open_store(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except OperatorError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None


def now_ms() -> int:
    return SystemClock().now_ms()


def operator_amount(text: str, currency: Currency, *, allow_negative: bool = False) -> int:
    try:
        return parse_operator_amount(text, currency, allow_negative=allow_negative)
    except (WalletError, ValueError) as error:
        raise typer.BadParameter(f"invalid amount {text!r}: {error}") from None


def read_secret_stdin(what: str) -> str:
    """One line from stdin (a secret is never a command-line argument: ``ps`` shows those)."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        console.print(f"[red]error:[/red] expected the {what} on stdin")
        raise typer.Exit(2)
    return line
