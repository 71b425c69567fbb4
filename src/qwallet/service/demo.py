"""Demo data, so that a fresh ``qwallet serve`` answers the documentation's examples verbatim.

The documented withdraw example uses the session token below; the demo player holds enough XAG
for it. The demo partner's password and the demo operator key are stored hashed like any other,
so each start issues fresh ones (and revokes the previous) in order to print them.

The demo partner is a sandbox partner (``DEMO_PAYMENT_METHODS``: the wallet and the sandbox
card), priced in XAG, with plain-http callbacks allowed (the demo game runs on loopback http).
Only demo data is set up this way: a production partner can never offer the sandbox card.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwallet.domain.money import Currency
from qwallet.service import api_keys, operators, partners, players, sessions
from qwallet.service.partners import IssuedCredential, PartnerUpdate
from qwallet.service.player_logins import set_player_password
from qwallet.store.sql import SqlDatabase

DEMO_TOKEN = "0fabcdc4-fe07-44f2-b968-93da3b324898"  # noqa: S105 - documented example
DEMO_PARTNER = "demo"
DEMO_PLAYER_ID = "demo-player-1"
DEMO_BALANCE_MINOR = 100_000_00
DEMO_OPERATOR_KEY_NAME = "demo"
DEMO_ADMIN = "admin"
DEMO_PLAYER_USERNAME = "demo"
DEMO_PAYMENT_METHODS = ("wallet", "sandbox_card")
# Who the audit log says set the demo partner up.
DEMO_OPERATOR = "demo-seed"


@dataclass(frozen=True, slots=True)
class DemoData:
    credential: IssuedCredential
    operator_api_key: str
    player_id: str
    token: str
    admin_username: str = DEMO_ADMIN
    admin_password: str = ""
    # The demo player's sign-in for the lobby; a fresh password on every start.
    player_username: str = DEMO_PLAYER_USERNAME
    player_password: str = ""


async def seed_demo(
    db: SqlDatabase,
    xag: Currency,
    now_ms: int,
    *,
    idle_timeout_s: int,
    lifetime_s: int,
    client_url: str | None = None,
) -> DemoData:
    async with db.transaction() as tx:
        has_partner = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", DEMO_PARTNER)
        has_player = await tx.fetchrow("SELECT id FROM players WHERE id = $1", DEMO_PLAYER_ID)
    if has_partner:
        # Revoke first: rotation keeps at most two credentials active, and a start interrupted
        # between the two steps (or a rotation from the demo console) may have left two.
        who = DEMO_OPERATOR
        await partners.revoke_old_credentials(db, DEMO_PARTNER, now_ms, operator=who)
        credential = await partners.rotate_credentials(db, DEMO_PARTNER, now_ms, operator=who)
        await partners.revoke_old_credentials(db, DEMO_PARTNER, now_ms, operator=who)
        # A database seeded before partners had payment settings gets them now.
        await partners.update_partner(
            db,
            DEMO_PARTNER,
            PartnerUpdate(
                payment_currency=xag,
                sandbox=True,
                payment_methods=DEMO_PAYMENT_METHODS,
                allow_http_callback=True,
            ),
            operator=DEMO_OPERATOR,
            now_ms=now_ms,
        )
    else:
        created = await partners.create_partner(
            db,
            DEMO_PARTNER,
            now_ms,
            client_url=client_url,
            payment_currency=xag,
            sandbox=True,
            payment_methods=DEMO_PAYMENT_METHODS,
            allow_http_callback=True,
            operator=DEMO_OPERATOR,
        )
        credential = created.credential
    if not has_player:
        await players.create_player(
            db,
            xag,
            now_ms,
            nickname="Demo Player",
            balance_minor=DEMO_BALANCE_MINOR,
            player_id=DEMO_PLAYER_ID,
            operator=DEMO_OPERATOR,
        )
    session = await sessions.create_session(
        db,
        player_id=DEMO_PLAYER_ID,
        partner=DEMO_PARTNER,
        now_ms=now_ms,
        idle_timeout_s=idle_timeout_s,
        lifetime_s=lifetime_s,
        token=DEMO_TOKEN,
    )
    await api_keys.revoke_api_keys(db, DEMO_OPERATOR_KEY_NAME, now_ms, operator=DEMO_OPERATOR)
    key = await api_keys.create_api_key(db, DEMO_OPERATOR_KEY_NAME, now_ms, operator=DEMO_OPERATOR)
    # The console's demo operator: a fresh password each start, like the other demo secrets.
    async with db.transaction() as tx:
        has_admin = await tx.fetchrow("SELECT id FROM operators WHERE username = $1", DEMO_ADMIN)
    if has_admin:
        admin = await operators.reset_password(
            db, DEMO_ADMIN, operator=DEMO_OPERATOR, now_ms=now_ms
        )
    else:
        admin = await operators.create_operator(db, DEMO_ADMIN, now_ms, operator=DEMO_OPERATOR)
    player_password = await set_player_password(
        db, DEMO_PLAYER_ID, DEMO_PLAYER_USERNAME, now_ms, operator=DEMO_OPERATOR
    )
    return DemoData(
        credential,
        key,
        DEMO_PLAYER_ID,
        session.token,
        admin_username=admin.username,
        admin_password=admin.password,
        player_username=DEMO_PLAYER_USERNAME,
        player_password=player_password,
    )


async def point_demo_partner(
    db: SqlDatabase,
    *,
    client_url: str,
    callback_url: str,
    query_url: str,
    callback_secret: str,
    query_username: str,
    query_password: str,
    now_ms: int,
    partner: str = DEMO_PARTNER,
) -> None:
    """Point the demo partner at a running demo game backend (``qwallet demo``): its URLs, a
    fresh callback secret and Query Withdrawal credentials, as a sandbox partner on loopback
    http priced in XAG. One transaction with its audit entry ``partner.point_at_demo_game`` by
    ``DEMO_OPERATOR`` (the URLs and the Query username; never the secrets)."""
    await partners.point_sandbox_partner(
        db,
        partner,
        now_ms,
        client_url=client_url,
        callback_url=callback_url,
        query_url=query_url,
        callback_secret=callback_secret,
        query_username=query_username,
        query_password=query_password,
        display_name="Demo game",
        payment_methods=DEMO_PAYMENT_METHODS,
        operator=DEMO_OPERATOR,
        action="partner.point_at_demo_game",
    )
