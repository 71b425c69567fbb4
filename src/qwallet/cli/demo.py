"""``qwallet demo-partner`` (the demo game studio alone) and ``qwallet demo`` (the platform and
the demo game together, as child processes).

``qwallet demo`` is for a person at a terminal: it prints the sign-in box and nothing else. Its
children log to ``qwallet-data/logs/platform.log`` and ``demo-game.log`` (text lines unless
``--log-format json``; ``auto`` means text here, since a person reads these files too); when a
child stops on its own, the end of its log is shown.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qwallet import logs
from qwallet.cli._common import JsonOption, console, with_store
from qwallet.cli.serve import LogFormatOption
from qwallet.demo import launch as demo_launch
from qwallet.settings import Settings


def _demo_option(name: str, help_text: str, *, secret: bool = False) -> Any:
    return typer.Option(envvar=f"QWALLET_DEMO_{name}", help=help_text, show_default=not secret)


def demo_partner(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="QWALLET_DEMO_PORT", help="Port.")] = 8001,
    platform_url: Annotated[
        str, _demo_option("PLATFORM_URL", "The platform's base URL.")
    ] = "http://127.0.0.1:8000",
    username: Annotated[str, _demo_option("USERNAME", "Wallet API user.")] = "demo",
    password: Annotated[str, _demo_option("PASSWORD", "Wallet API password.", secret=True)] = "",
    callback_secret: Annotated[
        str, _demo_option("CALLBACK_SECRET", "Payment callback secret.", secret=True)
    ] = "",
    query_username: Annotated[
        str, _demo_option("QUERY_USERNAME", "User the platform sends to /query-withdrawal.")
    ] = "",
    query_password: Annotated[
        str, _demo_option("QUERY_PASSWORD", "Its password.", secret=True)
    ] = "",
    data_dir: Annotated[Path, _demo_option("DATA_DIR", "Kit and game databases.")] = Path(
        "demo-data"
    ),
    platform_origin: Annotated[
        str | None, _demo_option("PLATFORM_ORIGIN", "Origin of the page embedding the game.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: LogFormatOption = logs.LogFormat.AUTO,
) -> None:
    """Run the demo game studio (backend + HTML5 client) against a platform, with uvicorn."""
    import uvicorn

    from qwallet.demo.game import DemoConfig, create_demo_game

    try:
        config = DemoConfig.from_env(
            platform_url=platform_url,
            username=username,
            password=password,
            callback_secret=callback_secret,
            query_username=query_username,
            query_password=query_password,
            data_dir=data_dir,
            platform_origin=platform_origin,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    logs.configure(log_level, log_format)
    console.print(f"demo game at http://{host}:{port}/ (platform {config.platform_url})")
    uvicorn.run(
        create_demo_game(config),
        host=host,
        port=port,
        access_log=False,
        log_level=log_level,
        log_config=None,
    )


def demo_command(
    port: Annotated[int, typer.Option(help="Platform port.")] = 8000,
    partner_port: Annotated[int, typer.Option(help="Demo game backend port.")] = 8001,
    log_format: LogFormatOption = logs.LogFormat.AUTO,
    as_json: JsonOption = False,
) -> None:
    """Run the platform (demo data) and the demo game together; prints where to sign in."""
    import signal
    import time

    if not demo_launch.demo_partner_available():
        console.print(
            "[red]error:[/red] the demo game backend (qwallet.demo, `qwallet demo-partner`) is"
            " not part of this installation; run `qwallet serve` for the platform alone."
        )
        raise typer.Exit(2)
    settings = Settings.from_env()
    url = f"http://127.0.0.1:{port}"
    # SIGTERM (a service manager, `kill`, a test's teardown) stops the children like Ctrl-C does;
    # Python's default would end this process at once and leave both servers running.
    signal.signal(signal.SIGTERM, _interrupt)
    # The children's logs go to files a person reads: text unless JSON was asked for.
    child_format = logs.LogFormat.JSON if log_format is logs.LogFormat.JSON else logs.LogFormat.TEXT
    platform_log = demo_launch.open_log(demo_launch.LOG_FILES["platform"])
    game_log = demo_launch.open_log(demo_launch.LOG_FILES["game"])
    children: list[subprocess.Popen[str]] = []
    try:
        platform, info = demo_launch.start_platform(
            port,
            demo_launch.environment(
                QWALLET_PUBLIC_BASE_URL=url, **{logs.ENV_VAR: child_format.value}
            ),
            platform_log,
        )
        children.append(platform)
        demo_launch.wait_until_up(f"{url}/healthz")
        config = demo_launch.DemoPartnerConfig.fresh("127.0.0.1", partner_port)
        with_store(settings, lambda store: demo_launch.configure_demo_partner(store, config))
        partner_env = demo_launch.demo_partner_environment(config, url, info)
        partner_env[logs.ENV_VAR] = child_format.value
        children.append(
            demo_launch.start_demo_partner(
                partner_port, demo_launch.environment(**partner_env), game_log
            )
        )
        demo_launch.wait_until_up(config.client_url)
        summary = {
            "lobby": f"{url}/",
            "playerUsername": info.get("playerUsername"),
            "playerPassword": info.get("playerPassword"),
            "gameUrl": config.client_url,
            **{k: v for k, v in info.items() if k.startswith(("admin", "operator"))},
            "platformLog": str(demo_launch.LOG_FILES["platform"]),
            "gameLog": str(demo_launch.LOG_FILES["game"]),
        }
        if as_json:
            sys.stdout.write(json.dumps(summary) + "\n")
            sys.stdout.flush()
        else:
            console.print(f"\n[bold green]Demo running.[/bold green] Lobby: {summary['lobby']}")
            console.print(
                f"  Player sign-in: {summary['playerUsername']} / {summary['playerPassword']}"
            )
            for key, value in summary.items():
                if key.startswith(("admin", "operator")):
                    console.print(f"  {key}: {value}")
            console.print(f"  Logs: {summary['platformLog']}, {summary['gameLog']}")
            console.print("  Press Ctrl-C to stop.")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        console.print("[red]error:[/red] a demo server stopped")
        _show_logs(children)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:  # a child did not start
        console.print(f"[red]error:[/red] {error}")
        _show_logs()
        raise typer.Exit(1) from None
    finally:
        for child in reversed(children):
            demo_launch.stop(child)
        platform_log.close()
        game_log.close()


def _show_logs(children: list[subprocess.Popen[str]] | None = None) -> None:
    """Something stopped by itself or never came up: show the end of the logs on the terminal
    (only the stopped children's when ``children`` is given)."""
    for index, name in enumerate(("platform", "game")):
        if children is not None and (index >= len(children) or children[index].poll() is None):
            continue
        path = demo_launch.LOG_FILES[name]
        tail = demo_launch.log_tail(path)
        if tail:
            console.print(f"[red]{name} log[/red] ({path}):", highlight=False)
            console.print(tail, markup=False, highlight=False)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
