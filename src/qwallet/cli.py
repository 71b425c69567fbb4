"""The ``qwallet`` command line: serve, migrate, and the operator's scriptable commands.

Every command honours ``QWALLET_DATABASE_URL`` and brings the schema up to date before it works.
With ``--json`` a command prints exactly one JSON object (camelCase keys) on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from qwallet import logs
from qwallet.bench.command import bench_command
from qwallet.clock import SystemClock
from qwallet.domain.money import Currency, parse_operator_amount
from qwallet.resolver import HoldResolver
from qwallet.service import api_keys, operators, partners, players, reconcile, sessions
from qwallet.service.demo import seed_demo
from qwallet.service.partners import OperatorError
from qwallet.service.player_logins import set_player_password
from qwallet.settings import Settings
from qwallet.store import migrate
from qwallet.store.factory import Store, open_store
from qwallet.store.sqlite import sqlite_path
from qwallet.verify import verify as verify_command
from qwallet.web import demo_launch
from qwallet.web.security import load_or_create_secret_key

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
partners_app = typer.Typer(no_args_is_help=True, help="Partners (game studios) and credentials.")
players_app = typer.Typer(no_args_is_help=True, help="Players and wallets.")
sessions_app = typer.Typer(no_args_is_help=True, help="Game sessions.")
keys_app = typer.Typer(no_args_is_help=True, help="Operator API keys.")
operators_app = typer.Typer(no_args_is_help=True, help="Admin console operator accounts.")
resolver_app = typer.Typer(no_args_is_help=True, help="The hold resolver (spec §3).")
app.add_typer(db_app, name="db")
app.add_typer(partners_app, name="partners")
app.add_typer(players_app, name="players")
app.add_typer(sessions_app, name="sessions")
app.add_typer(keys_app, name="api-keys")
app.add_typer(operators_app, name="operators")
app.add_typer(resolver_app, name="resolver")
app.command("bench")(bench_command)
app.command("verify")(verify_command)

console = Console(stderr=True)
# The audit log's "operator" for changes made on the command line.
CLI_OPERATOR = "cli"
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _emit(as_json: bool, payload: dict[str, Any], human: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        typer.echo(human)


def _with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
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


def _now() -> int:
    return SystemClock().now_ms()


# -- serve -------------------------------------------------------------------------------------


@app.command()
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
    as_json: JsonOption = False,
) -> None:
    """Run the platform (Wallet API, operator API, health, metrics) with uvicorn."""
    import uvicorn

    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host  # noqa: S104
    os.environ.setdefault("QWALLET_PUBLIC_BASE_URL", f"http://{shown_host}:{port}")
    if not os.environ.get("QWALLET_SECRET_KEY"):
        # One persistent key, inherited by every worker: browser sign-ins survive restarts.
        os.environ["QWALLET_SECRET_KEY"] = load_or_create_secret_key(
            _data_dir(Settings.from_env()) / "secret-key"
        )
    settings = Settings.from_env()
    base_url = settings.public_base_url
    seed = settings.is_embedded_default if demo is None else demo
    if seed:
        xag = settings.currency_registry.get("XAG")
        if xag is None:
            raise typer.BadParameter("demo data needs XAG among QWALLET_CURRENCIES")
        data = _with_store(
            settings,
            lambda store: seed_demo(
                store,
                xag,
                _now(),
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
    logs.configure(log_level)
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
        "log_config": None,  # keep the JSON logs configured above
    }
    if workers > 1:
        # Each worker keeps its own metrics; this directory lets /metrics add them up.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="qwallet-metrics-")
        )
        uvicorn.run(
            "qwallet.api.app:create_app_from_env", factory=True, workers=workers, **server_options
        )
    else:
        from qwallet.api.app import create_app

        uvicorn.run(create_app(settings, freeze_heap=True), **server_options)


def _refuse_sandbox_in_production(settings: Settings) -> None:
    """Do not serve while a production partner could be paid by a sandbox method."""
    names = _with_store(settings, partners.sandbox_violations)
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


# -- demo-partner ------------------------------------------------------------------------------


def _demo_option(name: str, help_text: str, *, secret: bool = False) -> Any:
    return typer.Option(envvar=f"QWALLET_DEMO_{name}", help=help_text, show_default=not secret)


@app.command("demo-partner")
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
) -> None:
    """Run the demo game studio (backend + HTML5 client) against a platform, with uvicorn."""
    import uvicorn

    from qwallet.demo import DemoConfig, create_demo_game

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
    logs.configure(log_level)
    console.print(f"demo game at http://{host}:{port}/ (platform {config.platform_url})")
    uvicorn.run(
        create_demo_game(config),
        host=host,
        port=port,
        access_log=False,
        log_level=log_level,
        log_config=None,
    )


# -- db ----------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema."""
    migrate.upgrade(Settings.from_env().database_url)
    typer.echo("database is up to date")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    migrate.current(Settings.from_env().database_url)


# -- partners ----------------------------------------------------------------------------------


def _credential_json(credential: partners.IssuedCredential) -> dict[str, Any]:
    return {
        "partner": credential.partner,
        "username": credential.username,
        "password": credential.password,
    }


def _methods_option(text: str | None) -> list[str] | None:
    return None if text is None else [part for part in text.split(",") if part.strip()]


PaymentCurrencyHelp = "Currency of the partner's prices; every order is charged in it."
MethodsHelp = "Comma-separated payment methods: wallet, sandbox_card (sandbox partners only)."
SandboxHelp = "A sandbox partner (test integration): may offer sandbox payment methods."
HttpHelp = "Allow a plain-http payment callback URL (insecure; https is required otherwise)."


@partners_app.command("create")
def partners_create(
    name: str,
    payment_currency: Annotated[
        str | None, typer.Option("--payment-currency", help=f"Required. {PaymentCurrencyHelp}")
    ] = None,
    ip_allow: Annotated[
        list[str] | None, typer.Option("--ip-allow", help="CIDR allowed to call (repeatable).")
    ] = None,
    client_url: Annotated[str | None, typer.Option(help="Game client URL for the iframe.")] = None,
    callback_url: Annotated[str | None, typer.Option(help="Payment callback URL.")] = None,
    query_url: Annotated[str | None, typer.Option(help="Query Withdrawal URL.")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help=SandboxHelp)] = False,
    payment_methods: Annotated[str, typer.Option("--payment-methods", help=MethodsHelp)] = "wallet",
    allow_http_callback: Annotated[
        bool, typer.Option("--allow-http-callback", help=HttpHelp)
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a partner; prints its Basic credentials (the password is shown only once)."""
    settings = Settings.from_env()

    async def work(store: Store) -> partners.IssuedCredential:
        return await partners.create_partner(
            store,
            name,
            _now(),
            ip_allow=ip_allow or [],
            client_url=client_url,
            callback_url=callback_url,
            query_url=query_url,
            payment_currency=_payment_currency(settings, payment_currency),
            sandbox=sandbox,
            payment_methods=_methods_option(payment_methods) or [],
            allow_http_callback=allow_http_callback,
            operator=CLI_OPERATOR,
            require_payment_currency=True,
        )

    credential = _with_store(settings, work)
    _emit(
        as_json,
        _credential_json(credential),
        f"partner {name}: username {credential.username} password {credential.password}",
    )


def _payment_currency(settings: Settings, code: str | None) -> Currency | None:
    return None if code is None else partners.payment_currency(settings.currency_registry, code)


@partners_app.command("update")
def partners_update(
    name: str,
    payment_currency: Annotated[
        str | None, typer.Option("--payment-currency", help=PaymentCurrencyHelp)
    ] = None,
    client_url: Annotated[str | None, typer.Option(help="Game client URL ('' clears it).")] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="Payment callback URL ('' clears it).")
    ] = None,
    query_url: Annotated[
        str | None, typer.Option(help="Query Withdrawal URL ('' clears it).")
    ] = None,
    sandbox: Annotated[
        bool | None, typer.Option("--sandbox/--no-sandbox", help=SandboxHelp)
    ] = None,
    payment_methods: Annotated[
        str | None, typer.Option("--payment-methods", help=MethodsHelp)
    ] = None,
    allow_http_callback: Annotated[
        bool | None,
        typer.Option("--allow-http-callback/--no-allow-http-callback", help=HttpHelp),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a partner's settings; only the options given change. Audited."""
    settings = Settings.from_env()

    async def work(store: Store) -> dict[str, Any]:
        change = partners.PartnerUpdate(
            client_url=client_url,
            callback_url=callback_url,
            query_url=query_url,
            payment_currency=_payment_currency(settings, payment_currency),
            sandbox=sandbox,
            payment_methods=_methods_option(payment_methods),
            allow_http_callback=allow_http_callback,
        )
        return await partners.update_partner(
            store, name, change, operator=CLI_OPERATOR, now_ms=_now()
        )

    changed = _with_store(settings, work)
    _emit(
        as_json,
        {"partner": name, "changed": changed},
        f"partner {name}: " + (", ".join(f"{k}={v}" for k, v in changed.items()) or "no change"),
    )


@partners_app.command("rotate-credentials")
def partners_rotate(name: str, as_json: JsonOption = False) -> None:
    """Issue a new password; the old ones keep working until revoke-old-credentials."""
    credential = _with_store(
        Settings.from_env(), lambda store: partners.rotate_credentials(store, name, _now())
    )
    _emit(
        as_json,
        _credential_json(credential),
        f"new password for {credential.username}: {credential.password}",
    )


@partners_app.command("revoke-old-credentials")
def partners_revoke_old(name: str, as_json: JsonOption = False) -> None:
    """Revoke every credential of the partner except the newest."""
    count = _with_store(
        Settings.from_env(), lambda store: partners.revoke_old_credentials(store, name, _now())
    )
    _emit(as_json, {"partner": name, "revoked": count}, f"revoked {count} credential(s)")


@partners_app.command("set-allow-list")
def partners_set_allow_list(
    name: str,
    cidrs: Annotated[list[str] | None, typer.Argument(help="CIDRs; none clears the list.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Replace the partner's IP allow-list."""
    result = _with_store(
        Settings.from_env(), lambda store: partners.set_allow_list(store, name, cidrs or [])
    )
    _emit(as_json, {"partner": name, "ipAllow": result}, f"allow-list of {name}: {result or 'any'}")


@partners_app.command("list")
def partners_list(as_json: JsonOption = False) -> None:
    """List partners."""
    rows = _with_store(Settings.from_env(), partners.list_partners)
    _emit(
        as_json,
        {"partners": rows},
        "\n".join(
            f"{r['name']}\tallow={r['ipAllow'] or 'any'}\tcurrency={r['paymentCurrency'] or '-'}"
            f"\tmethods={','.join(r['paymentMethods'])}"  # type: ignore[arg-type]
            + ("\tsandbox" if r["sandbox"] else "")
            + ("\tHTTP-CALLBACK-ALLOWED" if r["allowHttpCallback"] else "")
            for r in rows
        )
        or "no partners",
    )


# -- players -----------------------------------------------------------------------------------


@players_app.command("create")
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
    balance_minor = _operator_amount(balance, wallet_currency)
    limit_minor = None if daily_limit is None else _operator_amount(daily_limit, wallet_currency)
    player_id = _with_store(
        settings,
        lambda store: players.create_player(
            store,
            wallet_currency,
            _now(),
            nickname=nickname,
            language=language,
            balance_minor=balance_minor,
            daily_withdraw_limit_minor=limit_minor,
        ),
    )
    _emit(as_json, {"playerId": player_id}, player_id)


def _operator_amount(text: str, currency: Any, *, allow_negative: bool = False) -> int:
    from qwallet.domain.errors import WalletError

    try:
        return parse_operator_amount(text, currency, allow_negative=allow_negative)
    except (WalletError, ValueError) as error:
        raise typer.BadParameter(f"invalid amount {text!r}: {error}") from None


@players_app.command("show")
def players_show(player_id: str, as_json: JsonOption = False) -> None:
    """Show a player's wallet."""
    settings = Settings.from_env()
    currencies = {c.code: c for c in settings.currencies}
    info = _with_store(settings, lambda store: players.show_player(store, currencies, player_id))
    _emit(as_json, info, "\n".join(f"{k}: {v}" for k, v in info.items()))


@players_app.command("block")
def players_block(player_id: str, as_json: JsonOption = False) -> None:
    """Block a player: new sessions, withdrawals and deposits are refused (112)."""
    _with_store(Settings.from_env(), lambda store: players.set_blocked(store, player_id, True))
    _emit(as_json, {"playerId": player_id, "status": "blocked"}, f"{player_id} blocked")


@players_app.command("unblock")
def players_unblock(player_id: str, as_json: JsonOption = False) -> None:
    """Unblock a player."""
    _with_store(Settings.from_env(), lambda store: players.set_blocked(store, player_id, False))
    _emit(as_json, {"playerId": player_id, "status": "active"}, f"{player_id} active")


@players_app.command("adjust")
def players_adjust(
    player_id: str,
    amount: Annotated[str, typer.Option(help="Signed amount: 10.00 credits, -10.00 debits.")],
    reason: Annotated[str, typer.Option(help="Why (mandatory, recorded).")],
    currency: Annotated[str, typer.Option()] = "XAG",
    operator: Annotated[str, typer.Option(help="Who is adjusting.")] = "cli",
    as_json: JsonOption = False,
) -> None:
    """Manual balance adjustment: a ledger entry against the operator account."""
    settings = Settings.from_env()
    wallet_currency = settings.currency_registry.get(currency.upper())
    if wallet_currency is None:
        raise typer.BadParameter(f"unknown currency {currency}")
    minor = _operator_amount(amount, wallet_currency, allow_negative=True)
    adjustment_id = _with_store(
        settings,
        lambda store: players.adjust_balance(
            store, player_id, wallet_currency, minor, reason, operator, _now()
        ),
    )
    _emit(as_json, {"adjustmentId": adjustment_id, "playerId": player_id}, adjustment_id)


@players_app.command("set-password")
def players_set_password(
    player_id: str,
    username: Annotated[str, typer.Option(help="Sign-in name for the player pages.")],
    as_json: JsonOption = False,
) -> None:
    """Give a player a sign-in for the lobby; prints the generated password (shown once)."""
    password = _with_store(
        Settings.from_env(),
        lambda store: set_player_password(store, player_id, username, _now()),
    )
    _emit(
        as_json,
        {"playerId": player_id, "username": username, "password": password},
        f"player {player_id}: username {username} password {password}",
    )


# -- sessions ----------------------------------------------------------------------------------


@sessions_app.command("create")
def sessions_create(
    player: Annotated[str, typer.Option("--player", help="playerId")],
    partner: Annotated[str, typer.Option("--partner", help="partner name")],
    game: Annotated[str, typer.Option("--game", help="game code")] = sessions.DEFAULT_GAME,
    as_json: JsonOption = False,
) -> None:
    """Create a game session: prints token, launchUrl, expiresAt."""
    settings = Settings.from_env()
    issued = _with_store(
        settings,
        lambda store: sessions.create_session(
            store,
            player_id=player,
            partner=partner,
            now_ms=_now(),
            idle_timeout_s=settings.session_idle_timeout_s,
            lifetime_s=settings.session_lifetime_s,
            game_code=game,
        ),
    )
    payload = issued.as_json()
    _emit(as_json, payload, "\n".join(f"{k}: {v}" for k, v in payload.items()))


# -- api keys ----------------------------------------------------------------------------------


@keys_app.command("create")
def api_keys_create(name: str, as_json: JsonOption = False) -> None:
    """Create an operator API key (for POST /api/sessions); shown once."""
    key = _with_store(
        Settings.from_env(), lambda store: api_keys.create_api_key(store, name, _now())
    )
    _emit(as_json, {"name": name, "apiKey": key}, key)


# -- operators and the hold resolver -------------------------------------------------------


@operators_app.command("create")
def operators_create(name: str, as_json: JsonOption = False) -> None:
    """Create an admin console account; prints its generated password once."""
    issued = _with_store(
        Settings.from_env(), lambda store: operators.create_operator(store, name, _now())
    )
    _emit(
        as_json,
        {"username": issued.username, "password": issued.password},
        f"operator {issued.username}: password {issued.password}   (shown once)",
    )


@resolver_app.command("run-once")
def resolver_run_once(as_json: JsonOption = False) -> None:
    """One pass of the hold resolver: ask partners about overdue withdrawals, apply answers."""
    settings = Settings.from_env()

    async def work(store: Store) -> list[dict[str, Any]]:
        async with HoldResolver(store, settings, SystemClock()) as resolver:
            outcomes = await resolver.run_once()
        return [
            {
                "qwTransactionId": o.qw_transaction_id,
                "mmTransactionId": o.mm_transaction_id,
                "partner": o.partner,
                "partnerStatus": o.resolution.partner_status,
                "action": o.resolution.action,
                "detail": o.resolution.detail,
            }
            for o in outcomes
        ]

    results = _with_store(settings, work)
    human = "\n".join(
        f"{r['mmTransactionId']} ({r['partner']}): {r['partnerStatus'] or 'no answer'} -> "
        f"{r['action']}"
        for r in results
    )
    _emit(as_json, {"resolutions": results}, human or "no holds due")


# -- reconcile ---------------------------------------------------------------------------------


@app.command("reconcile")
def reconcile_command(as_json: JsonOption = False) -> None:
    """Prove every balance against the ledger; exits 1 on any difference."""
    report = _with_store(Settings.from_env(), reconcile.reconcile)
    payload = report.as_json()
    human = (
        f"{'OK' if report.ok else 'DIFFERENCES FOUND'}: {report.players} players, "
        f"{report.transactions} transactions, {report.entries} ledger entries"
    )
    if not report.ok:
        human += "\n" + json.dumps(payload, indent=2)
    _emit(as_json, payload, human)
    if not report.ok:
        raise typer.Exit(1)


# -- demo --------------------------------------------------------------------------------------


@app.command("demo")
def demo_command(
    port: Annotated[int, typer.Option(help="Platform port.")] = 8000,
    partner_port: Annotated[int, typer.Option(help="Demo game backend port.")] = 8001,
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
    platform, info = demo_launch.start_platform(
        port, demo_launch.environment(QWALLET_PUBLIC_BASE_URL=url)
    )
    children = [platform]
    try:
        demo_launch.wait_until_up(f"{url}/healthz")
        config = demo_launch.DemoPartnerConfig.fresh("127.0.0.1", partner_port)
        _with_store(settings, lambda store: demo_launch.configure_demo_partner(store, config))
        partner_env = demo_launch.demo_partner_environment(config, url, info)
        children.append(
            demo_launch.start_demo_partner(partner_port, demo_launch.environment(**partner_env))
        )
        demo_launch.wait_until_up(config.client_url)
        summary = {
            "lobby": f"{url}/",
            "playerUsername": info.get("playerUsername"),
            "playerPassword": info.get("playerPassword"),
            "gameUrl": config.client_url,
            **{k: v for k, v in info.items() if k.startswith(("admin", "operator"))},
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
            console.print("  Press Ctrl-C to stop.")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            demo_launch.stop(child)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    app()
