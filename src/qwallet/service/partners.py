"""Partners (game studios): creation, settings, credentials with rotation, IP allow-lists.

Payment settings (docs/payments.md) are the operator's, per partner:

- ``payment_currency``: the currency of the partner's prices; every order is charged in it,
  whatever the player's wallet holds. Required for new partners (the CLI and the console ask for
  it); a partner without one takes no orders until it is set.
- ``sandbox`` and ``payment_methods``: the methods its players may pay with. A sandbox method
  (``sandbox_card``) needs ``sandbox = 1``; the database refuses anything else and
  ``sandbox_violations`` finds a row that got around it (``qwallet serve`` then refuses to start).
- ``allow_http_callback``: a callback URL must be ``https`` unless this is set.

Secrets: the Wallet API password is stored as a scrypt hash and returned once. The payment
callback secret and the Query Withdrawal password (the platform's credentials at the partner) are
stored in clear because the platform signs and authenticates with them; each is returned only by
the call that set it, never listed and never written to the audit log.

Every function that changes a partner is one operator use case: it owns its transaction and
writes its audit entry (``qwallet.service.audit``) inside it, so the change and its record commit
together or not at all. ``operator`` names who made it (see ``audit`` for the entry points' names).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qwallet.domain.money import Currency, CurrencyRegistry
from qwallet.domain.payment_methods import (
    DEFAULT_METHODS,
    SANDBOX_METHODS,
    MethodsError,
    check_methods,
    split_methods,
)
from qwallet.service import audit
from qwallet.service.credentials import hash_password, new_password
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
MAX_URL_CHARS = 2000
MAX_DISPLAY_NAME_CHARS = 200
# The Query Withdrawal credentials go into an HTTP Basic header at the partner.
_QUERY_USERNAME = re.compile(r"[^\x00-\x20:\x7f]{1,64}")
MIN_QUERY_PASSWORD_CHARS = 8
MAX_QUERY_PASSWORD_CHARS = 256
DEFAULT_QUERY_USERNAME = "qwallet"


class OperatorError(ValueError):
    """An operator request that cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    partner: str
    username: str
    password: str  # shown once: only its hash is stored


@dataclass(frozen=True, slots=True)
class NewPartner:
    """What a new partner needs to know, returned once by ``create_partner``."""

    partner: str
    username: str  # Wallet API (Basic) username: the partner's name
    password: str  # Wallet API password: only its hash is stored
    callback_secret: str  # signs the payment callbacks (spec §2.3)
    query_username: str  # the platform's user at the partner's Query Withdrawal endpoint
    # Its password when the platform generated it; None when the operator supplied it.
    query_password: str | None

    @property
    def credential(self) -> IssuedCredential:
        return IssuedCredential(self.partner, self.username, self.password)


@dataclass(frozen=True, slots=True)
class QueryCredentials:
    partner: str
    username: str
    password: str | None  # the generated password (shown once); None when it was supplied


def new_secret() -> str:
    """A callback secret or a Query Withdrawal password: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def check_query_username(username: str | None) -> str:
    username = (username or "").strip() or DEFAULT_QUERY_USERNAME
    if not _QUERY_USERNAME.fullmatch(username):
        raise OperatorError(
            "the Query Withdrawal username must be 1-64 characters without spaces, ':'"
            " or control characters"
        )
    return username


def check_query_password(password: str) -> str:
    if not MIN_QUERY_PASSWORD_CHARS <= len(password) <= MAX_QUERY_PASSWORD_CHARS or any(
        ch < " " or ch == "\x7f" for ch in password
    ):
        raise OperatorError(
            f"the Query Withdrawal password must be {MIN_QUERY_PASSWORD_CHARS}"
            f"-{MAX_QUERY_PASSWORD_CHARS} characters without control characters"
        )
    return password


def normalize_cidrs(cidrs: list[str]) -> list[str]:
    try:
        return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in cidrs if c.strip()]
    except ValueError as error:
        raise OperatorError(f"invalid CIDR: {error}") from None


def check_url(url: str | None) -> str | None:
    """An absolute http(s) URL, or None for a blank one."""
    url = (url or "").strip()
    if not url:
        return None
    if len(url) > MAX_URL_CHARS or not url.lower().startswith(("http://", "https://")):
        raise OperatorError(f"not an http(s) URL: {url[:80]!r}")
    if "\x00" in url or any(ch.isspace() for ch in url):
        raise OperatorError(f"a URL cannot contain spaces or control characters: {url[:80]!r}")
    return url


def check_callback_url(url: str | None, *, allow_http: bool) -> str | None:
    """The payment callback URL: https, or plain http only where the operator allowed it."""
    url = check_url(url)
    if url is not None and url.lower().startswith("http://") and not allow_http:
        raise OperatorError(
            f"the payment callback URL must be https: {url[:80]!r}"
            " (allow plain http for this partner explicitly to use it)"
        )
    return url


def payment_currency(currencies: CurrencyRegistry, code: str | None) -> Currency:
    """The configured currency named ``code`` (a partner's ``payment_currency``)."""
    code = (code or "").strip().upper()
    if not code:
        raise OperatorError(
            f"a payment currency is required (one of {', '.join(currencies.codes())})"
        )
    currency = currencies.get(code)
    if currency is None:
        raise OperatorError(
            f"unknown payment currency {code!r} (configured: {', '.join(currencies.codes())})"
        )
    return currency


def _methods(methods: Sequence[str], *, sandbox: bool) -> str:
    try:
        return ",".join(check_methods(methods, sandbox=sandbox))
    except MethodsError as error:
        raise OperatorError(str(error)) from None


async def _partner_id(tx: SqlTransaction, name: str) -> int:
    row = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", name)
    if row is None:
        raise OperatorError(f"no partner named {name!r}")
    return int(row["id"])


async def _issue(tx: SqlTransaction, partner_id: int, name: str, now_ms: int) -> IssuedCredential:
    password = new_password()
    await tx.execute(
        "INSERT INTO partner_credentials (partner_id, username, password_hash, created_at_ms)"
        " VALUES ($1, $2, $3, $4)",
        partner_id,
        name,
        hash_password(password),
        now_ms,
    )
    return IssuedCredential(name, name, password)


async def create_partner(
    db: SqlDatabase,
    name: str,
    now_ms: int,
    *,
    ip_allow: list[str] | None = None,
    client_url: str | None = None,
    callback_url: str | None = None,
    query_url: str | None = None,
    payment_currency: Currency | None = None,
    sandbox: bool = False,
    payment_methods: Sequence[str] = DEFAULT_METHODS,
    allow_http_callback: bool = False,
    display_name: str | None = None,
    query_username: str | None = None,
    query_password: str | None = None,
    operator: str = audit.SYSTEM,
    require_payment_currency: bool = False,
) -> NewPartner:
    """Create a partner with everything it needs to integrate, in one transaction with its
    ``partner.create`` audit entry.

    Issued at once: the Wallet API credential (username = name, password returned once), the
    payment callback secret, and the platform's Query Withdrawal credentials at the partner
    (``query_username``, default ``qwallet``; ``query_password``, generated unless given). A
    partner made by any entry point can therefore receive signed callbacks from the start.

    ``payment_currency`` may be left out only for a partner that uses the Wallet API alone
    (it takes no orders until one is set); the operator's CLI and console require it.
    """
    if not _NAME.fullmatch(name):
        raise OperatorError(
            "partner name must be 1-63 characters of a-z, 0-9, '_', '.', '-',"
            " starting with a letter or digit"
        )
    cidrs = normalize_cidrs(ip_allow or [])
    client_url, query_url = check_url(client_url), check_url(query_url)
    callback_url = check_callback_url(callback_url, allow_http=allow_http_callback)
    methods = _methods(payment_methods, sandbox=sandbox)
    if payment_currency is None and require_payment_currency:
        raise OperatorError("a payment currency is required (--payment-currency)")
    shown_name = (display_name or "").strip()[:MAX_DISPLAY_NAME_CHARS] or None
    query_user = check_query_username(query_username)
    generated_query_password = None if query_password else new_secret()
    stored_query_password = query_password or generated_query_password
    assert stored_query_password is not None
    check_query_password(stored_query_password)
    callback_secret = new_secret()
    currency_code = None if payment_currency is None else payment_currency.code
    async with db.transaction() as tx:
        if await tx.fetchrow("SELECT id FROM partners WHERE name = $1", name):
            raise OperatorError(f"a partner named {name!r} already exists")
        await tx.execute(
            "INSERT INTO partners (name, display_name, ip_allow, client_url, callback_url,"
            " query_url, query_username, query_password, callback_secret, payment_currency,"
            " sandbox, payment_methods, allow_http_callback, created_at_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            name,
            shown_name,
            json.dumps(cidrs) if cidrs else None,
            client_url,
            callback_url,
            query_url,
            query_user,
            stored_query_password,
            callback_secret,
            currency_code,
            int(sandbox),
            methods,
            int(allow_http_callback),
            now_ms,
        )
        details = {
            "displayName": shown_name,
            "clientUrl": client_url,
            "callbackUrl": callback_url,
            "queryUrl": query_url,
            "queryUsername": query_user,
            "ipAllow": cidrs,
            "paymentCurrency": currency_code,
            "sandbox": sandbox,
            "paymentMethods": methods,
            "allowHttpCallback": allow_http_callback,
        }
        await audit.record(tx, operator, "partner.create", name, details, now_ms)
        credential = await _issue(tx, await _partner_id(tx, name), name, now_ms)
    return NewPartner(
        name,
        credential.username,
        credential.password,
        callback_secret,
        query_user,
        generated_query_password,
    )


@dataclass(frozen=True, slots=True)
class PartnerUpdate:
    """A change of partner settings: None leaves a setting as it is; ``""`` clears a URL."""

    client_url: str | None = None
    callback_url: str | None = None
    query_url: str | None = None
    query_username: str | None = None
    ip_allow: Sequence[str] | None = None
    payment_currency: Currency | None = None
    sandbox: bool | None = None
    payment_methods: Sequence[str] | None = None
    allow_http_callback: bool | None = None


async def update_partner(
    db: SqlDatabase,
    name: str,
    change: PartnerUpdate,
    *,
    operator: str = audit.SYSTEM,
    now_ms: int,
) -> dict[str, Any]:
    """Apply ``change`` in one transaction, audited when anything changed; return the settings
    that changed (camelCase names, new values).

    The result is checked as a whole: turning ``sandbox`` off while a sandbox method is listed,
    or ``allow_http_callback`` off while the callback URL is plain http, is refused.
    """
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    async with db.transaction() as tx:
        row = await tx.fetchrow(f"SELECT * FROM partners WHERE name = $1{lock}", name)
        if row is None:
            raise OperatorError(f"no partner named {name!r}")
        sandbox = bool(row["sandbox"]) if change.sandbox is None else change.sandbox
        allow_http = (
            bool(row["allow_http_callback"])
            if change.allow_http_callback is None
            else change.allow_http_callback
        )
        methods_given = change.payment_methods
        methods = _methods(
            split_methods(row["payment_methods"]) if methods_given is None else methods_given,
            sandbox=sandbox,
        )
        callback_url = check_callback_url(
            row["callback_url"] if change.callback_url is None else change.callback_url,
            allow_http=allow_http,
        )
        values: dict[str, Any] = {
            "client_url": row["client_url"]
            if change.client_url is None
            else check_url(change.client_url),
            "callback_url": callback_url,
            "query_url": row["query_url"]
            if change.query_url is None
            else check_url(change.query_url),
            "query_username": row["query_username"]
            if change.query_username is None
            else (
                check_query_username(change.query_username)
                if change.query_username.strip()
                else None
            ),
            "ip_allow": row["ip_allow"]
            if change.ip_allow is None
            else _cidr_json(normalize_cidrs(list(change.ip_allow))),
            "payment_currency": row["payment_currency"]
            if change.payment_currency is None
            else change.payment_currency.code,
            "sandbox": int(sandbox),
            "payment_methods": methods,
            "allow_http_callback": int(allow_http),
        }
        changed = {column: value for column, value in values.items() if value != row[column]}
        if changed:
            assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changed, 1))
            await tx.execute(
                f"UPDATE partners SET {assignments} WHERE id = ${len(changed) + 1}",
                *changed.values(),
                row["id"],
            )
        details = {_camel(column): _shown(column, value) for column, value in changed.items()}
        if details:
            await audit.record(tx, operator, "partner.update", name, details, now_ms)
    return details


def _cidr_json(cidrs: list[str]) -> str | None:
    return json.dumps(cidrs) if cidrs else None


def _camel(column: str) -> str:
    head, *rest = column.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _shown(column: str, value: Any) -> Any:
    if column == "ip_allow":
        return json.loads(value) if value else []
    if column in ("sandbox", "allow_http_callback"):
        return bool(value)
    return value


async def sandbox_violations(db: SqlDatabase) -> list[str]:
    """Names of partners that are not sandbox partners yet list a sandbox payment method.

    The database's CHECK refuses such rows; this finds one written around it (a restored dump,
    a hand-made UPDATE with the check dropped), so that the server refuses to start.
    """
    async with db.transaction() as tx:
        rows = await tx.fetch("SELECT name, sandbox, payment_methods FROM partners ORDER BY name")
    return [
        str(row["name"])
        for row in rows
        if not row["sandbox"] and SANDBOX_METHODS & set(split_methods(row["payment_methods"]))
    ]


# A wrong password is checked against this many hashes whatever the partner (padding with a
# dummy hash, qwallet.api.auth), so that timing reveals neither the partner nor a rotation in
# progress. Rotation therefore keeps at most this many credentials active: the overlap needs two.
MAX_ACTIVE_CREDENTIALS = 2


async def rotate_credentials(
    db: SqlDatabase, name: str, now_ms: int, *, operator: str = audit.SYSTEM
) -> IssuedCredential:
    """Issue a new password; the old ones stay valid until ``revoke_old_credentials``.

    Refused while the partner already has ``MAX_ACTIVE_CREDENTIALS`` active credentials.
    Audited as ``partner.rotate_wallet_password``.
    """
    async with db.transaction() as tx:
        partner_id = await _partner_id(tx, name)
        if db.dialect == "postgresql":
            # Two rotations at once must not both see room for one more (READ COMMITTED).
            await tx.fetchrow("SELECT id FROM partners WHERE id = $1 FOR UPDATE", partner_id)
        row = await tx.fetchrow(
            "SELECT COUNT(*) AS active FROM partner_credentials"
            " WHERE partner_id = $1 AND revoked_at_ms IS NULL",
            partner_id,
        )
        active = int(row["active"]) if row is not None else 0
        if active >= MAX_ACTIVE_CREDENTIALS:
            raise OperatorError(
                f"partner {name!r} already has {active} active credentials (at most"
                f" {MAX_ACTIVE_CREDENTIALS}): revoke the old credentials first"
            )
        credential = await _issue(tx, partner_id, name, now_ms)
        await audit.record(tx, operator, "partner.rotate_wallet_password", name, {}, now_ms)
    return credential


async def revoke_old_credentials(
    db: SqlDatabase, name: str, now_ms: int, *, operator: str = audit.SYSTEM
) -> int:
    """Revoke every credential of the partner except the newest; returns how many.
    Audited as ``partner.revoke_old_credentials``."""
    async with db.transaction() as tx:
        partner_id = await _partner_id(tx, name)
        count = await tx.execute(
            "UPDATE partner_credentials SET revoked_at_ms = $1"
            " WHERE partner_id = $2 AND revoked_at_ms IS NULL AND id <> ("
            " SELECT MAX(id) FROM partner_credentials WHERE partner_id = $2)",
            now_ms,
            partner_id,
        )
        await audit.record(
            tx, operator, "partner.revoke_old_credentials", name, {"revoked": count}, now_ms
        )
    return count


async def rotate_callback_secret(
    db: SqlDatabase, name: str, now_ms: int, *, operator: str = audit.SYSTEM
) -> str:
    """Replace the payment callback secret at once (the partner must switch to it); the new
    secret is returned once. Audited as ``partner.rotate_callback_secret``."""
    secret = new_secret()
    async with db.transaction() as tx:
        partner_id = await _partner_id(tx, name)
        await tx.execute(
            "UPDATE partners SET callback_secret = $1 WHERE id = $2", secret, partner_id
        )
        await audit.record(tx, operator, "partner.rotate_callback_secret", name, {}, now_ms)
    return secret


async def point_sandbox_partner(
    db: SqlDatabase,
    name: str,
    now_ms: int,
    *,
    client_url: str,
    callback_url: str,
    query_url: str,
    callback_secret: str,
    query_username: str,
    query_password: str,
    display_name: str,
    payment_methods: Sequence[str],
    operator: str = audit.SYSTEM,
    action: str = "partner.point_sandbox",
) -> None:
    """Point a partner, made a sandbox partner, at a studio running on loopback (``qwallet
    demo``'s game): its URLs, the given callback secret (form callbacks) and Query Withdrawal
    credentials, ``payment_methods`` (the sandbox card allowed) over plain http, priced in XAG
    unless it has a currency; the display name only if it has none. One transaction with its
    audit entry ``action`` (the URLs and the Query username, never a secret)."""
    async with db.transaction() as tx:
        changed = await tx.execute(
            "UPDATE partners SET client_url = $1, callback_url = $2, query_url = $3,"
            " callback_secret = $4, callback_format = 'form', query_username = $5,"
            " query_password = $6, display_name = COALESCE(display_name, $7),"
            " sandbox = 1, payment_methods = $8, allow_http_callback = 1,"
            " payment_currency = COALESCE(payment_currency, 'XAG')"
            " WHERE name = $9",
            client_url,
            callback_url,
            query_url,
            callback_secret,
            query_username,
            query_password,
            display_name,
            _methods(payment_methods, sandbox=True),
            name,
        )
        if changed != 1:
            raise OperatorError(f"no partner named {name!r}")
        details = {
            "clientUrl": client_url,
            "callbackUrl": callback_url,
            "queryUrl": query_url,
            "queryUsername": query_username,
        }
        await audit.record(tx, operator, action, name, details, now_ms)


async def set_query_credentials(
    db: SqlDatabase,
    name: str,
    now_ms: int,
    *,
    username: str | None = None,
    password: str | None = None,
    operator: str = audit.SYSTEM,
) -> QueryCredentials:
    """Set the credentials the platform presents at the partner's Query Withdrawal endpoint.

    ``username`` None keeps the current one (``qwallet`` if none); ``password`` None generates
    a new one, returned once (audited as ``partner.rotate_query_secret``, the console's name),
    else the given one is stored (``partner.set_query_credentials``). Replaced at once.
    """
    generated = None if password is not None else new_secret()
    stored = check_query_password(password if password is not None else str(generated))
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            f"SELECT id, query_username FROM partners WHERE name = $1{lock}", name
        )
        if row is None:
            raise OperatorError(f"no partner named {name!r}")
        user = check_query_username(username if username is not None else row["query_username"])
        await tx.execute(
            "UPDATE partners SET query_username = $1, query_password = $2 WHERE id = $3",
            user,
            stored,
            row["id"],
        )
        action = "partner.rotate_query_secret" if generated else "partner.set_query_credentials"
        await audit.record(tx, operator, action, name, {"queryUsername": user}, now_ms)
    return QueryCredentials(name, user, generated)


async def set_allow_list(
    db: SqlDatabase,
    name: str,
    cidrs: list[str],
    *,
    operator: str = audit.SYSTEM,
    now_ms: int | None = None,
) -> list[str]:
    """Replace the IP allow-list (empty: any address). Audited as ``partner.set_allow_list``."""
    normalized = normalize_cidrs(cidrs)
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE partners SET ip_allow = $1 WHERE id = $2",
            _cidr_json(normalized),
            await _partner_id(tx, name),
        )
        await audit.record(
            tx, operator, "partner.set_allow_list", name, {"ipAllow": normalized}, now_ms
        )
    return normalized


async def list_partners(db: SqlDatabase) -> list[dict[str, object]]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT p.name, p.ip_allow, p.client_url, p.callback_url, p.query_url,"
            " p.payment_currency, p.sandbox, p.payment_methods, p.allow_http_callback,"
            " p.created_at_ms, (SELECT COUNT(*) FROM partner_credentials c"
            "  WHERE c.partner_id = p.id AND c.revoked_at_ms IS NULL) AS active_credentials"
            " FROM partners p ORDER BY p.name"
        )
    return [
        {
            "name": row["name"],
            "username": row["name"],
            "ipAllow": json.loads(row["ip_allow"]) if row["ip_allow"] else [],
            "clientUrl": row["client_url"],
            "callbackUrl": row["callback_url"],
            "queryUrl": row["query_url"],
            "paymentCurrency": row["payment_currency"],
            "sandbox": bool(row["sandbox"]),
            "paymentMethods": list(split_methods(row["payment_methods"])),
            "allowHttpCallback": bool(row["allow_http_callback"]),
            "activeCredentials": int(row["active_credentials"]),
            "createdAtMs": int(row["created_at_ms"]),
        }
        for row in rows
    ]


async def list_partner_rows(db: SqlDatabase) -> list[Row]:
    """Every partner's settings for the console, without any secret value: only whether the
    callback secret and the Query Withdrawal password are set."""
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT p.name, p.display_name, p.ip_allow, p.client_url, p.callback_url,"
            " p.query_url, p.query_username, p.created_at_ms, p.payment_currency, p.sandbox,"
            " p.payment_methods, p.allow_http_callback,"
            " CASE WHEN p.callback_secret IS NULL THEN 0 ELSE 1 END AS has_callback_secret,"
            " CASE WHEN p.query_password IS NULL THEN 0 ELSE 1 END AS has_query_password,"
            " (SELECT COUNT(*) FROM partner_credentials c"
            "   WHERE c.partner_id = p.id AND c.revoked_at_ms IS NULL) AS active_credentials"
            " FROM partners p ORDER BY p.name"
        )
