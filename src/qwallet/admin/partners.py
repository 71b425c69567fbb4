"""Partner set-up from the console: the form's fields turned into calls of
``qwallet.service.partners``, and the secrets to show exactly once.

Every rule (names, URLs, payment settings, secrets) and every write, with its audit entry in the
same transaction, lives in ``service.partners``: the CLI calls the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qwallet.domain.money import CurrencyRegistry
from qwallet.service import partners
from qwallet.service.partners import OperatorError, PartnerUpdate
from qwallet.store.sql import Row, SqlDatabase

# Labels of the secrets page (not secrets).
WALLET_USERNAME = "Wallet API username"
WALLET_PASSWORD = "Wallet API password"  # noqa: S105
CALLBACK_SECRET = "Payment callback secret"  # noqa: S105
QUERY_USERNAME = "Query Withdrawal username (platform at the partner)"
QUERY_PASSWORD = "Query Withdrawal password (platform at the partner)"  # noqa: S105


@dataclass(frozen=True, slots=True)
class ShownOnce:
    """Secrets to display once, label → value."""

    partner: str
    secrets: dict[str, str] = field(default_factory=dict)


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
    created = await partners.create_partner(
        db,
        name,
        now_ms,
        ip_allow=ip_allow,
        client_url=client_url,
        callback_url=callback_url,
        query_url=query_url,
        payment_currency=partners.payment_currency(currencies, payment_currency),
        sandbox=sandbox,
        payment_methods=payment_methods,
        allow_http_callback=allow_http_callback,
        display_name=display_name,
        query_username=query_username,
        query_password=query_password or None,
        operator=operator,
    )
    shown = {
        WALLET_USERNAME: created.username,
        WALLET_PASSWORD: created.password,
        CALLBACK_SECRET: created.callback_secret,
        QUERY_USERNAME: created.query_username,
    }
    if created.query_password is not None:
        shown[QUERY_PASSWORD] = created.query_password
    return ShownOnce(name, shown)


async def rotate(db: SqlDatabase, operator: str, name: str, what: str, now_ms: int) -> ShownOnce:
    """Issue a new secret of one kind: ``wallet`` (old stays valid until revoked),
    ``callback`` or ``query`` (replaced at once)."""
    if what == "wallet":
        credential = await partners.rotate_credentials(db, name, now_ms, operator=operator)
        return ShownOnce(
            name, {WALLET_USERNAME: credential.username, WALLET_PASSWORD: credential.password}
        )
    if what == "callback":
        secret = await partners.rotate_callback_secret(db, name, now_ms, operator=operator)
        return ShownOnce(name, {CALLBACK_SECRET: secret})
    if what == "query":
        query = await partners.set_query_credentials(db, name, now_ms, operator=operator)
        assert query.password is not None  # generated
        return ShownOnce(name, {QUERY_PASSWORD: query.password})
    raise OperatorError(f"unknown secret {what!r}")


async def revoke_old(db: SqlDatabase, operator: str, name: str, now_ms: int) -> int:
    return await partners.revoke_old_credentials(db, name, now_ms, operator=operator)


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
    return await partners.list_partner_rows(db)


def split_cidrs(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]
