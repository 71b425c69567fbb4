"""``qwallet partners``: partners (game studios), their settings and every secret they need.

Each command calls one use case of ``qwallet.service.partners`` (the console calls the same),
which writes the change and its audit entry (actor ``cli:<OS user>``) in one transaction.
Secrets are printed once, by the command that issued them; a secret the operator supplies is
read from stdin, never from the command line.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, read_secret_stdin, with_store
from qwallet.domain.money import Currency
from qwallet.service import partners
from qwallet.settings import Settings
from qwallet.store.factory import Store

app = typer.Typer(no_args_is_help=True, help="Partners (game studios) and credentials.")


def _credential_json(credential: partners.IssuedCredential) -> dict[str, Any]:
    return {
        "partner": credential.partner,
        "username": credential.username,
        "password": credential.password,
    }


def _methods_option(text: str | None) -> list[str] | None:
    return None if text is None else [part for part in text.split(",") if part.strip()]


def _payment_currency(settings: Settings, code: str | None) -> Currency | None:
    return None if code is None else partners.payment_currency(settings.currency_registry, code)


PaymentCurrencyHelp = "Currency of the partner's prices; every order is charged in it."
MethodsHelp = "Comma-separated payment methods: wallet, sandbox_card (sandbox partners only)."
SandboxHelp = "A sandbox partner (test integration): may offer sandbox payment methods."
HttpHelp = "Allow a plain-http payment callback URL (insecure; https is required otherwise)."
QueryUserHelp = "User the platform presents at the partner's Query Withdrawal endpoint."
QueryStdinHelp = "Read the Query Withdrawal password from stdin (else one is generated)."


@app.command("create")
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
    display_name: Annotated[
        str | None, typer.Option("--display-name", help="Game title shown in the lobby.")
    ] = None,
    query_username: Annotated[
        str | None, typer.Option("--query-username", help=f"{QueryUserHelp} Default: qwallet.")
    ] = None,
    query_password_stdin: Annotated[
        bool, typer.Option("--query-password-stdin", help=QueryStdinHelp)
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a partner; prints every secret it needs (each shown only once).

    The Wallet API (Basic) credentials, the payment callback secret and the Query Withdrawal
    credentials the platform presents at the partner.
    """
    settings = Settings.from_env()
    query_password = (
        read_secret_stdin("Query Withdrawal password") if query_password_stdin else None
    )

    async def work(store: Store) -> partners.NewPartner:
        return await partners.create_partner(
            store,
            name,
            now_ms(),
            ip_allow=ip_allow or [],
            client_url=client_url,
            callback_url=callback_url,
            query_url=query_url,
            payment_currency=_payment_currency(settings, payment_currency),
            sandbox=sandbox,
            payment_methods=_methods_option(payment_methods) or [],
            allow_http_callback=allow_http_callback,
            display_name=display_name,
            query_username=query_username,
            query_password=query_password,
            operator=actor(),
            require_payment_currency=True,
        )

    created = with_store(settings, work)
    payload = {
        **_credential_json(created.credential),
        "callbackSecret": created.callback_secret,
        "queryUsername": created.query_username,
    }
    human = [
        f"partner {name}: username {created.username} password {created.password}",
        f"payment callback secret: {created.callback_secret}",
        f"query withdrawal (platform at the partner): username {created.query_username}",
    ]
    if created.query_password is not None:
        payload["queryPassword"] = created.query_password
        human[-1] += f" password {created.query_password}"
    emit(as_json, payload, "\n".join(human) + "\n(secrets shown once)")


@app.command("update")
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
        return await partners.update_partner(store, name, change, operator=actor(), now_ms=now_ms())

    changed = with_store(settings, work)
    emit(
        as_json,
        {"partner": name, "changed": changed},
        f"partner {name}: " + (", ".join(f"{k}={v}" for k, v in changed.items()) or "no change"),
    )


@app.command("rotate-credentials")
def partners_rotate(name: str, as_json: JsonOption = False) -> None:
    """Issue a new password; the old ones keep working until revoke-old-credentials."""
    credential = with_store(
        Settings.from_env(),
        lambda store: partners.rotate_credentials(store, name, now_ms(), operator=actor()),
    )
    emit(
        as_json,
        _credential_json(credential),
        f"new password for {credential.username}: {credential.password}",
    )


@app.command("revoke-old-credentials")
def partners_revoke_old(name: str, as_json: JsonOption = False) -> None:
    """Revoke every credential of the partner except the newest."""
    count = with_store(
        Settings.from_env(),
        lambda store: partners.revoke_old_credentials(store, name, now_ms(), operator=actor()),
    )
    emit(as_json, {"partner": name, "revoked": count}, f"revoked {count} credential(s)")


@app.command("rotate-callback-secret")
def partners_rotate_callback_secret(name: str, as_json: JsonOption = False) -> None:
    """Replace the payment callback secret at once; prints the new one (shown once)."""
    secret = with_store(
        Settings.from_env(),
        lambda store: partners.rotate_callback_secret(store, name, now_ms(), operator=actor()),
    )
    emit(
        as_json,
        {"partner": name, "callbackSecret": secret},
        f"payment callback secret of {name}: {secret}   (shown once)",
    )


@app.command("set-query-credentials")
def partners_set_query_credentials(
    name: str,
    username: Annotated[
        str | None, typer.Option("--username", help=f"{QueryUserHelp} Default: unchanged.")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from stdin (else generated)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Set the platform's Query Withdrawal credentials at the partner (replaced at once).

    Without --password-stdin a password is generated and printed once.
    """
    password = read_secret_stdin("Query Withdrawal password") if password_stdin else None
    query = with_store(
        Settings.from_env(),
        lambda store: partners.set_query_credentials(
            store, name, now_ms(), username=username, password=password, operator=actor()
        ),
    )
    payload: dict[str, Any] = {"partner": name, "queryUsername": query.username}
    human = f"query withdrawal credentials of {name}: username {query.username}"
    if query.password is not None:
        payload["queryPassword"] = query.password
        human += f" password {query.password}   (shown once)"
    emit(as_json, payload, human)


@app.command("set-allow-list")
def partners_set_allow_list(
    name: str,
    cidrs: Annotated[list[str] | None, typer.Argument(help="CIDRs; none clears the list.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Replace the partner's IP allow-list."""
    result = with_store(
        Settings.from_env(),
        lambda store: partners.set_allow_list(
            store, name, cidrs or [], operator=actor(), now_ms=now_ms()
        ),
    )
    emit(as_json, {"partner": name, "ipAllow": result}, f"allow-list of {name}: {result or 'any'}")


@app.command("list")
def partners_list(as_json: JsonOption = False) -> None:
    """List partners."""
    rows = with_store(Settings.from_env(), partners.list_partners)
    emit(
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
