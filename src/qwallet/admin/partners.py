"""Partner set-up from the console: endpoints, payment settings, and the secrets that are shown
exactly once.

The Wallet API password is stored as a hash (``service.partners``). The payment-callback secret
and the platform's Query Withdrawal password are stored in clear because the platform must sign
and authenticate with them, but the console shows each only in the answer that created it.
Payment settings (currency, sandbox, methods, plain-http callbacks) are validated by
``service.partners``, the same rules as the CLI's.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from qwallet.domain.money import CurrencyRegistry
from qwallet.service import audit, partners
from qwallet.service.partners import OperatorError, PartnerUpdate, check_url
from qwallet.store.sql import Row, SqlDatabase


@dataclass(frozen=True, slots=True)
class ShownOnce:
    """Secrets to display once, label → value."""

    partner: str
    secrets: dict[str, str] = field(default_factory=dict)


def new_callback_secret() -> str:
    return secrets.token_urlsafe(24)


async def create(
    db: SqlDatabase,
    operator: str,
    name: str,
    now_ms: int,
    *,
    display_name: str | None,
    client_url: str | None,
    callback_url: str | None,
    query_url: str | None,
    query_username: str | None,
    query_password: str | None,
    ip_allow: list[str],
    currencies: CurrencyRegistry,
    payment_currency: str | None,
    sandbox: bool,
    payment_methods: Sequence[str],
    allow_http_callback: bool,
) -> ShownOnce:
    currency = partners.payment_currency(currencies, payment_currency)
    client_url, query_url = check_url(client_url), check_url(query_url)
    callback_url = partners.check_callback_url(callback_url, allow_http=allow_http_callback)
    cidrs = partners.normalize_cidrs(ip_allow)
    credential = await partners.create_partner(
        db,
        name,
        now_ms,
        ip_allow=cidrs,
        client_url=client_url,
        callback_url=callback_url,
        query_url=query_url,
        payment_currency=currency,
        sandbox=sandbox,
        payment_methods=payment_methods,
        allow_http_callback=allow_http_callback,
    )
    callback_secret = new_callback_secret()
    query_username = (query_username or "").strip() or "qwallet"
    generated_query_password = not query_password
    query_password = query_password or secrets.token_urlsafe(24)
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE partners SET display_name = $1, callback_secret = $2, query_username = $3,"
            " query_password = $4 WHERE name = $5",
            (display_name or "").strip() or None,
            callback_secret,
            query_username,
            query_password,
            name,
        )
        await audit.record(
            tx,
            operator,
            "partner.create",
            name,
            {
                "clientUrl": client_url,
                "callbackUrl": callback_url,
                "queryUrl": query_url,
                "queryUsername": query_username,
                "ipAllow": cidrs,
                "paymentCurrency": currency.code,
                "sandbox": sandbox,
                "paymentMethods": ",".join(payment_methods),
                "allowHttpCallback": allow_http_callback,
            },
            now_ms,
        )
    shown = {
        "Wallet API username": credential.username,
        "Wallet API password": credential.password,
        "Payment callback secret": callback_secret,
        "Query Withdrawal username (platform at the partner)": query_username,
    }
    if generated_query_password:
        shown["Query Withdrawal password (platform at the partner)"] = query_password
    return ShownOnce(name, shown)


async def rotate(db: SqlDatabase, operator: str, name: str, what: str, now_ms: int) -> ShownOnce:
    """Issue a new secret of one kind: ``wallet`` (old stays valid until revoked),
    ``callback`` or ``query`` (replaced at once)."""
    if what == "wallet":
        credential = await partners.rotate_credentials(db, name, now_ms)
        await audit.record_now(db, operator, "partner.rotate_wallet_password", name, {}, now_ms)
        return ShownOnce(
            name,
            {
                "Wallet API username": credential.username,
                "Wallet API password": credential.password,
            },
        )
    if what not in ("callback", "query"):
        raise OperatorError(f"unknown secret {what!r}")
    value = new_callback_secret() if what == "callback" else secrets.token_urlsafe(24)
    column = "callback_secret" if what == "callback" else "query_password"
    async with db.transaction() as tx:
        changed = await tx.execute(
            f"UPDATE partners SET {column} = $1 WHERE name = $2", value, name
        )
        if changed != 1:
            raise OperatorError(f"no partner named {name!r}")
        await audit.record(tx, operator, f"partner.rotate_{what}_secret", name, {}, now_ms)
    label = (
        "Payment callback secret"
        if what == "callback"
        else "Query Withdrawal password (platform at the partner)"
    )
    return ShownOnce(name, {label: value})


async def revoke_old(db: SqlDatabase, operator: str, name: str, now_ms: int) -> int:
    count = await partners.revoke_old_credentials(db, name, now_ms)
    await audit.record_now(
        db, operator, "partner.revoke_old_credentials", name, {"revoked": count}, now_ms
    )
    return count


async def update(
    db: SqlDatabase,
    operator: str,
    name: str,
    now_ms: int,
    *,
    client_url: str | None,
    callback_url: str | None,
    query_url: str | None,
    query_username: str | None,
    ip_allow: list[str],
    currencies: CurrencyRegistry,
    payment_currency: str | None,
    sandbox: bool,
    payment_methods: Sequence[str],
    allow_http_callback: bool,
) -> None:
    """Change a partner's endpoints, allow-list and payment settings (the whole form at once;
    secrets are changed by ``rotate``). Audited as ``partner.update`` with what changed."""
    change = PartnerUpdate(
        client_url=client_url or "",
        callback_url=callback_url or "",
        query_url=query_url or "",
        query_username=query_username or "",
        ip_allow=ip_allow,
        payment_currency=partners.payment_currency(currencies, payment_currency),
        sandbox=sandbox,
        payment_methods=payment_methods,
        allow_http_callback=allow_http_callback,
    )
    await partners.update_partner(db, name, change, operator=operator, now_ms=now_ms)


async def list_all(db: SqlDatabase) -> list[Row]:
    """Partners without any secret value: only whether each secret is set."""
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


def split_cidrs(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]
