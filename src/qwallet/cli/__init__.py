"""The ``qwallet`` command line: serve, migrate, and the operator's scriptable commands.

Every command honours ``QWALLET_DATABASE_URL`` and brings the schema up to date before it works.
With ``--json`` a command prints exactly one JSON object (camelCase keys) on stdout.
"""

# The module docstring above is the root command's help text: keep it for the user.
#
# Layout: one module per command group (``cli/partners.py`` holds ``qwallet partners …``),
# ``_common.py`` for what they share. Every command that changes something calls one operator
# use case of ``qwallet.service`` with the actor ``cli:<OS user>``; no command holds SQL.
#
# To add a command group: write ``cli/<group>.py`` with ``app = typer.Typer(...)`` and its
# commands, and add ``(name, module.app)`` to ``GROUPS`` below. A top-level command goes into
# ``COMMANDS`` (``LAZY_COMMANDS`` for a tool outside the platform's runtime, listed first);
# options for every command (``--version``, a log format) belong in a ``@app.callback()``
# defined in this module. ``--help`` lists commands, then groups, each in the order of these
# tables.

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from qwallet.cli import (
    api_keys,
    db,
    demo,
    operators,
    orders,
    partners,
    players,
    reconcile,
    resolver,
    serve,
    sessions,
    studio,
    studio_check,
)
from qwallet.monitoring import build
from qwallet.monitoring.command import monitoring_app

# Commands that are tools around the platform, not part of it: their modules are imported only
# when the command runs (or ``--help`` lists it), so that ``qwallet serve`` and every operator
# command never load them (tests/unit/test_cli_imports.py).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("qwallet.bench.command", "bench_command"),
    "verify": ("qwallet.verify.command", "verify"),
}

COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("serve", serve.serve),
    ("demo-partner", demo.demo_partner),
    ("reconcile", reconcile.reconcile_command),
    ("demo", demo.demo_command),
]

GROUPS: list[tuple[str, typer.Typer]] = [
    ("db", db.app),
    ("partners", partners.app),
    ("players", players.app),
    ("sessions", sessions.app),
    ("api-keys", api_keys.app),
    ("operators", operators.app),
    ("resolver", resolver.app),
    ("orders", orders.app),
    ("monitoring", monitoring_app),
]


class _LazyCommands(TyperGroup):
    """The root group: ``LAZY_COMMANDS`` first (as they always were listed), loaded on use."""

    # ``Any``: the context and command classes are those of the click copy inside typer, which
    # it does not export.
    def list_commands(self, ctx: Any) -> list[str]:
        return [*LAZY_COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, function = LAZY_COMMANDS[cmd_name]
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(cmd_name)(getattr(importlib.import_module(module), function))
        return typer.main.get_command(single)


app = typer.Typer(
    cls=_LazyCommands,
    no_args_is_help=True,
    add_completion=False,
    help=__doc__,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        # The same source as /healthz and qwallet_build_info: the installed package's metadata.
        typer.echo(f"qwallet {build.version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print `qwallet <version>` and exit.",
        ),
    ] = False,
) -> None:
    pass


# ``qwallet partners faults …`` and ``qwallet partners report`` live in their own module.
studio.register(partners.app)

for _name, _command in COMMANDS:
    app.command(_name)(_command)
# ``partners check`` lives in its own module (it is a tool, not a setting of the partner).
partners.app.command("check")(studio_check.check_command)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def main() -> None:
    app()


__all__ = ["COMMANDS", "GROUPS", "LAZY_COMMANDS", "app", "main"]
