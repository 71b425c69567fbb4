"""Players and their wallets, seen from the operator's side: creation, blocking, adjustments.

An initial balance and every manual correction is an operator adjustment: an ``adjustments`` row
plus two ledger entries (operator account against the player's available account), applied in
the same database transaction as the balance change.

Each change here is one operator use case: one transaction that also writes its audit entry
(``qwallet.service.audit``), so the money and its record commit together or not at all.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from qwallet.domain.money import Currency, format_amount
from qwallet.domain.sessions import utc_day
from qwallet.service import audit
from qwallet.service.partners import OperatorError
from qwallet.service.sessions import revoke_player_sessions_in
from qwallet.store import ledger as money
from qwallet.store.sql import SqlDatabase, SqlTransaction


class PlayerNotFound(OperatorError):
    """No player has this id (the console answers 404)."""


# A reason is read by people in the audit log; the console's form fields hold 500 characters.
MAX_REASON_CHARS = 500
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "zh", "ja", "ko", "ru")


async def create_player(
    db: SqlDatabase,
    currency: Currency,
    now_ms: int,
    *,
    nickname: str | None = None,
    language: str = "en",
    balance_minor: int = 0,
    daily_withdraw_limit_minor: int | None = None,
    player_id: str | None = None,
    operator: str = audit.SYSTEM,
) -> str:
    """Create a player and wallet (an initial balance is an adjustment by ``operator``);
    audited as ``player.create``."""
    if balance_minor < 0 or balance_minor > currency.max_balance_minor:
        raise OperatorError("initial balance must be between 0 and the currency's maximum")
    if language not in LANGUAGES:
        raise OperatorError(f"language must be one of {', '.join(LANGUAGES)}")
    player_id = player_id or str(uuid.uuid4())
    nickname = nickname or f"player-{player_id[:8]}"
    if not 1 <= len(nickname) <= 64:
        raise OperatorError("nickname must be 1-64 characters")
    async with db.transaction() as tx:
        if await tx.fetchrow("SELECT id FROM players WHERE id = $1", player_id):
            raise OperatorError(f"player {player_id} already exists")
        await tx.execute(
            "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
            " held_minor, pending_in_minor, daily_withdraw_limit_minor, limit_day,"
            " day_withdrawn_minor, created_at_ms)"
            " VALUES ($1, $2, $3, $4, 'active', 0, 0, 0, $5, $6, 0, $7)",
            player_id,
            nickname,
            currency.code,
            language,
            daily_withdraw_limit_minor,
            utc_day(now_ms),
            now_ms,
        )
        if balance_minor:
            await _adjust(
                tx, player_id, currency, balance_minor, "initial balance", operator, now_ms
            )
        details = {
            "nickname": nickname,
            "currency": currency.code,
            "language": language,
            "balance": format_amount(balance_minor, currency),
            "dailyWithdrawLimit": None
            if daily_withdraw_limit_minor is None
            else format_amount(daily_withdraw_limit_minor, currency),
        }
        await audit.record(tx, operator, "player.create", player_id, details, now_ms)
    return player_id


async def _adjust(
    tx: SqlTransaction,
    player_id: str,
    currency: Currency,
    amount_minor: int,
    reason: str,
    operator: str,
    now_ms: int,
) -> str:
    adjustment_id = str(uuid.uuid4())
    adjusted = await money.adjust_wallet(
        tx,
        adjustment_id,
        player_id=player_id,
        currency=currency.code,
        amount_minor=amount_minor,
        max_balance_minor=currency.max_balance_minor,
        reason=reason,
        operator=operator,
        now_ms=now_ms,
    )
    if not adjusted:
        raise OperatorError(
            "adjustment would take the balance below zero or above the currency's maximum"
        )
    return adjustment_id


async def adjust_balance(
    db: SqlDatabase,
    player_id: str,
    currency: Currency,
    amount_minor: int,
    reason: str,
    operator: str,
    now_ms: int,
) -> str:
    """A manual credit (positive) or debit (negative); the reason is mandatory. The balance,
    the ledger entries and the ``player.adjust`` audit entry are one transaction."""
    if not reason.strip():
        raise OperatorError("an adjustment needs a reason")
    if len(reason) > MAX_REASON_CHARS:
        raise OperatorError(f"a reason is at most {MAX_REASON_CHARS} characters")
    if amount_minor == 0:
        raise OperatorError("an adjustment cannot be zero")
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT currency FROM players WHERE id = $1", player_id)
        if row is None:
            raise PlayerNotFound(f"no player {player_id}")
        if row["currency"] != currency.code:
            raise OperatorError(f"player's wallet is in {row['currency']}, not {currency.code}")
        adjustment_id = await _adjust(
            tx, player_id, currency, amount_minor, reason, operator, now_ms
        )
        details = {
            "amount": format_amount(amount_minor, currency),
            "currency": currency.code,
            "reason": reason,
            "adjustmentId": adjustment_id,
        }
        await audit.record(tx, operator, "player.adjust", player_id, details, now_ms)
    return adjustment_id


async def set_blocked(
    db: SqlDatabase,
    player_id: str,
    blocked: bool,
    *,
    now_ms: int | None = None,
    operator: str = audit.SYSTEM,
    reason: str | None = None,
) -> None:
    """Block or unblock. Blocking also ends the player's browser sign-ins (``web_generation``)
    and revokes their game session tokens, in the same transaction: nothing started before the
    block keeps working, except confirm and rollback of money already held. Audited as
    ``player.block`` / ``player.unblock`` with the reason."""
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise OperatorError(f"a reason is at most {MAX_REASON_CHARS} characters")
    async with db.transaction() as tx:
        if blocked:
            changed = await tx.execute(
                "UPDATE players SET status = 'blocked', web_generation = web_generation + 1"
                " WHERE id = $1",
                player_id,
            )
            if changed == 1:
                await revoke_player_sessions_in(tx, player_id, now_ms)
        else:
            changed = await tx.execute(
                "UPDATE players SET status = 'active' WHERE id = $1", player_id
            )
        if changed != 1:
            raise PlayerNotFound(f"no player {player_id}")
        action = "player.block" if blocked else "player.unblock"
        details = {"reason": (reason or "").strip() or None}
        await audit.record(tx, operator, action, player_id, details, now_ms)


async def show_player(
    db: SqlDatabase, currencies: dict[str, Currency], player_id: str
) -> dict[str, Any]:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT * FROM players WHERE id = $1", player_id)
    if row is None:
        raise PlayerNotFound(f"no player {player_id}")
    currency = currencies[row["currency"]]
    limit = row["daily_withdraw_limit_minor"]
    return {
        "playerId": row["id"],
        "nickname": row["nickname"],
        "currencyCode": row["currency"],
        "language": row["language"],
        "status": row["status"],
        "available": format_amount(row["available_minor"], currency),
        "held": format_amount(row["held_minor"], currency),
        "pendingIn": format_amount(row["pending_in_minor"], currency),
        "dailyWithdrawLimit": None if limit is None else format_amount(limit, currency),
    }
