"""``qwallet serve``: the platform under uvicorn, optionally with demo data.

Configuration reaches the server as a ``Settings`` value. Only with ``--workers N > 1`` does this
process write to ``os.environ``: uvicorn starts each worker as a fresh process that imports
``create_app_from_env`` and reads its settings from the environment it inherits, so the values
this command derives (the public base URL, the persistent secret key, the shared metrics
directory) must be in that environment. uvicorn has no other channel to its workers.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from qwallet import logs
from qwallet.cli._common import JsonOption, console, now_ms, with_store
from qwallet.cli.draining import draining_server
from qwallet.service import partners
from qwallet.service.demo import seed_demo
from qwallet.settings import Settings
from qwallet.store import migrate
from qwallet.store.sqlite import sqlite_path
from qwallet.web.security import load_or_create_secret_key


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
    demo: Annotated[
        bool | None,
        typer.Option(
            "--demo/--no-demo",
            help="Seed demo data and print its credentials (default: on for the embedded SQLite).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: LogFormatOption = logs.LogFormat.AUTO,
    as_json: JsonOption = False,
) -> None:
    """Run the platform (Wallet API, operator API, health, metrics) with uvicorn."""
    import uvicorn

    derived = _derived_environment(host, port)
    settings = Settings.from_env({**os.environ, **derived})
    base_url = settings.public_base_url
    seed = settings.is_embedded_default if demo is None else demo
    if seed:
        xag = settings.currency_registry.get("XAG")
        if xag is None:
            raise typer.BadParameter("demo data needs XAG among QWALLET_CURRENCIES")
        data = with_store(
            settings,
            lambda store: seed_demo(
                store,
                xag,
                now_ms(),
                idle_timeout_s=settings.session_idle_timeout_s,
                lifetime_s=settings.session_lifetime_s,
            ),
        )
        info = {
            "url": base_url,
            "apiDocs": f"{base_url}/docs/api",
            "username": data.credential.username,
            "password": data.credential.password,
            "operatorApiKey": data.operator_api_key,
            "playerId": data.player_id,
            "token": data.token,
            "adminUsername": data.admin_username,
            "adminPassword": data.admin_password,
            "lobby": f"{base_url}/",
            "playerUsername": data.player_username,
            "playerPassword": data.player_password,
        }
        if as_json:
            sys.stdout.write(json.dumps(info) + "\n")
            sys.stdout.flush()
        else:
            _print_banner(info)
    else:
        migrate.upgrade(settings.database_url)
    _refuse_sandbox_in_production(settings)
    chosen_format = logs.resolve(log_format)
    logs.configure(log_level, chosen_format)
    from qwallet.api.responses import CoalescingHttpToolsProtocol

    server_options: dict[str, Any] = {
        "host": host,
        "port": port,
        # httptools with each answer written in one send() (see CoalescingHttpToolsProtocol).
        "http": CoalescingHttpToolsProtocol,
        "access_log": False,
        # Our own trusted-proxy rule decides about X-Forwarded-For (qwallet.api.auth).
        "proxy_headers": False,
        "log_level": log_level,
        "log_config": None,  # keep the logs configured above
        # SIGTERM: stop accepting, answer what was read, then shut down (docs/operations.md).
        "timeout_graceful_shutdown": settings.drain_timeout_s,
    }
    if workers > 1:
        # The workers read their settings from the environment they inherit (module docstring).
        os.environ.update(derived)
        # Each worker configures its own logs (create_app_from_env): the format resolved here,
        # since the workers write to this process's stderr.
        os.environ.update({logs.ENV_VAR: chosen_format.value, logs.LEVEL_ENV_VAR: log_level})
        # Each worker keeps its own metrics; this directory lets /metrics add them up.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="qwallet-metrics-")
        )
        uvicorn.run(
            "qwallet.app:create_app_from_env", factory=True, workers=workers, **server_options
        )
    else:
        from qwallet.app import create_app

        config = uvicorn.Config(create_app(settings, freeze_heap=True), **server_options)
        server = draining_server(config)
        server.run()
        if not server.started:  # as uvicorn.run: the app did not start (its error is logged)
            raise typer.Exit(3)


LogFormatOption = Annotated[
    logs.LogFormat,
    typer.Option(
        envvar=logs.ENV_VAR,
        case_sensitive=False,
        help="Log lines on stderr: text (coloured on a terminal), json, or auto: text on a"
        " terminal, json otherwise.",
    ),
]


def _derived_environment(host: str, port: int) -> dict[str, str]:
    """The settings this command supplies when the environment does not: the public base URL
    from the listening address, and one persistent secret key (browser sign-ins survive
    restarts, and every worker signs with the same key)."""
    derived: dict[str, str] = {}
    if "QWALLET_PUBLIC_BASE_URL" not in os.environ:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host  # noqa: S104
        derived["QWALLET_PUBLIC_BASE_URL"] = f"http://{shown_host}:{port}"
    if not os.environ.get("QWALLET_SECRET_KEY"):
        derived["QWALLET_SECRET_KEY"] = load_or_create_secret_key(
            _data_dir(Settings.from_env()) / "secret-key"
        )
    return derived


def _refuse_sandbox_in_production(settings: Settings) -> None:
    """Do not serve while a production partner could be paid by a sandbox method."""
    names = with_store(settings, partners.sandbox_violations)
    if names:
        console.print(
            "[red]error:[/red] refusing to start: partner(s) "
            + ", ".join(names)
            + " list a sandbox payment method (sandbox_card) but are not sandbox partners."
            " Fix with `qwallet partners update NAME --payment-methods wallet`"
            " (or `--sandbox` for a test integration)."
        )
        raise typer.Exit(3)


def _data_dir(settings: Settings) -> Path:
    """Where local state lives: beside the embedded database, else ``./qwallet-data``."""
    if settings.database_url.startswith("sqlite:///"):
        return sqlite_path(settings.database_url).parent
    return Path("qwallet-data")


def _print_banner(info: dict[str, str]) -> None:
    url = info["url"]
    console.print(f"\n[bold green]qwallet is running[/bold green] at {url}")
    console.print(f"  API reference:        {info['apiDocs']}")
    console.print(f"  Wallet API user:      {info['username']}")
    console.print(f"  Wallet API password:  {info['password']}   (shown once)")
    console.print(f"  Operator API key:     {info['operatorApiKey']}")
    console.print(f"  Demo session token:   {info['token']}")
    console.print(f"  Admin console:        {url}/admin/  user {info['adminUsername']}")
    console.print(f"  Admin password:       {info['adminPassword']}   (shown once)")
    console.print(f"  Player lobby:         {info['lobby']}")
    console.print(
        f"  Player sign-in:       {info['playerUsername']} / {info['playerPassword']}"
        "   (shown once)"
    )
    console.print("\nTry the documented withdraw:")
    console.print(
        f"  curl -u '{info['username']}:{info['password']}' -H 'Content-Type: application/json' "
        f'{url}/wallet/withdraw -d \'{{"token": "{info["token"]}", "mmTransactionId": '
        '"1234abcd", "amount": {"amount": 230.00, "currencyCode": "XAG"}, '
        '"txDescription": "Test Shopping."}\'\n',
        soft_wrap=True,
    )
