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
# ``COMMANDS``; options for every command (``--version``, a log format) belong in a
# ``@app.callback()`` defined in this module. ``--help`` lists commands, then groups, each in
# the order of these tables.

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from qwallet.bench.command import bench_command
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
)
from qwallet.monitoring import build
from qwallet.monitoring.command import monitoring_app
from qwallet.verify import verify as verify_command

COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("bench", bench_command),
    ("verify", verify_command),
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

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False
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
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def main() -> None:
    app()


__all__ = ["COMMANDS", "GROUPS", "app", "main"]
