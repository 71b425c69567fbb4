"""The money tables — ``ledger_entries`` and the wallet row's balances — written for the use
cases that move money inside a transaction of their own (hold resolution, payment from the
wallet, operator adjustments).

The Wallet API's calls go through the storage port (``port.py``: ``engine.py`` on SQLite and in
memory, ``sql/wallet_v1.sql`` on PostgreSQL). The other movements run in the caller's
``SqlTransaction`` with its audit and resolution rows, and write the money only here, so every
``INSERT INTO ledger_entries`` of the platform sits in ``store/``. The statements are written
once for both databases (``qwallet.store.sql``). Which accounts a step moves is
``qwallet.domain.ledger``'s; this module only records it.
"""

from __future__ import annotations

from qwallet.domain import ledger
from qwallet.domain.ledger import Account, WalletBalances
from qwallet.domain.transactions import Phase
from qwallet.store.sql import Row, SqlTransaction


async def claim_transaction_key(
    tx: SqlTransaction,
    *,
    partner_id: int,
    kind: str,
    mm_transaction_id: str,
    qw_transaction_id: str,
    now_ms: int,
) -> None:
    """The ``transaction_keys`` row of a transaction written outside the Wallet API's calls
    (a payment from the wallet), in the caller's transaction: it keeps the id unique forever
    and answers for the transaction once its month is archived."""
    await tx.execute(
        "INSERT INTO transaction_keys (partner_id, mm_transaction_id, kind, qw_transaction_id,"
        " created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        partner_id,
        mm_transaction_id,
        kind,
        qw_transaction_id,
        now_ms,
    )


async def append_transaction_entries(
    tx: SqlTransaction,
    qw_transaction_id: str,
    phase: Phase,
    entries: ledger.Movement,
    *,
    player_id: str,
    partner_id: int,
    currency: str,
    now_ms: int,
) -> None:
    """The entries of one step of a Wallet API transaction (they sum to zero): the partner's
    account is keyed by the partner, the wallet's by the player."""
    for account, delta in entries:
        is_partner = account is Account.PARTNER
        await tx.execute(
            "INSERT INTO ledger_entries (transaction_id, phase, account, player_id,"
            " partner_id, currency, amount_minor, created_at_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            qw_transaction_id,
            phase.value,
            account.value,
            None if is_partner else player_id,
            partner_id if is_partner else None,
            currency,
            delta,
            now_ms,
        )


async def move_wallet(
    tx: SqlTransaction, player_id: str, before: WalletBalances, after: WalletBalances
) -> None:
    """Move the wallet row from ``before`` to ``after`` (read under its lock), as differences."""
    await tx.execute(
        "UPDATE players SET available_minor = available_minor + $1,"
        " held_minor = held_minor + $2, pending_in_minor = pending_in_minor + $3"
        " WHERE id = $4",
        after.available_minor - before.available_minor,
        after.held_minor - before.held_minor,
        after.pending_in_minor - before.pending_in_minor,
        player_id,
    )


async def debit_for_payment(
    tx: SqlTransaction,
    player_id: str,
    currency: str,
    amount_minor: int,
    today: int,
) -> bool:
    """Take ``amount_minor`` from an active wallet of ``currency`` that holds it and whose daily
    withdrawal limit (of UTC day ``today``) allows it; counts it towards that limit. ``False``
    (nothing changed) when any condition fails."""
    changed = await tx.execute(
        "UPDATE players SET available_minor = available_minor - $1,"
        " day_withdrawn_minor = CASE WHEN limit_day = $2 THEN day_withdrawn_minor ELSE 0 END + $1,"
        " limit_day = $2"
        " WHERE id = $3 AND status = 'active' AND currency = $4 AND available_minor >= $1"
        " AND (daily_withdraw_limit_minor IS NULL OR daily_withdraw_limit_minor >="
        "  CASE WHEN limit_day = $2 THEN day_withdrawn_minor ELSE 0 END + $1)",
        amount_minor,
        today,
        player_id,
        currency,
    )
    return changed == 1


async def adjust_wallet(
    tx: SqlTransaction,
    adjustment_id: str,
    *,
    player_id: str,
    currency: str,
    amount_minor: int,
    max_balance_minor: int,
    reason: str,
    operator: str,
    now_ms: int,
) -> bool:
    """An operator adjustment: the balance (never below zero, never above the currency's
    maximum with the pending deposits), its ``adjustments`` row and its ledger entries.
    ``False`` (nothing written) when the bounds refuse it."""
    changed = await tx.execute(
        "UPDATE players SET available_minor = available_minor + $1"
        " WHERE id = $2 AND available_minor + $1 >= 0"
        " AND available_minor + pending_in_minor + $1 <= $3",
        amount_minor,
        player_id,
        max_balance_minor,
    )
    if changed != 1:
        return False
    await tx.execute(
        "INSERT INTO adjustments (id, player_id, amount_minor, currency, reason, operator,"
        " created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        adjustment_id,
        player_id,
        amount_minor,
        currency,
        reason,
        operator,
        now_ms,
    )
    for account, delta in ledger.adjustment(amount_minor):
        await tx.execute(
            "INSERT INTO ledger_entries (adjustment_id, phase, account, player_id, currency,"
            " amount_minor, created_at_ms) VALUES ($1, 'adjust', $2, $3, $4, $5, $6)",
            adjustment_id,
            account.value,
            player_id if account is Account.AVAILABLE else None,
            currency,
            delta,
            now_ms,
        )
    return True


CARRY_PHASE = "carry"


async def month_carry(tx: SqlTransaction, lower_ms: int, upper_ms: int) -> list[Row]:
    """What the entries of [lower_ms, upper_ms) leave on each account (non-zero only), each
    with one of those entries' ids to carry it (``carry_forward``)."""
    sums = await tx.fetch(
        "SELECT account, player_id, partner_id, currency, SUM(amount_minor) AS total"
        " FROM ledger_entries WHERE created_at_ms >= $1 AND created_at_ms < $2"
        " GROUP BY account, player_id, partner_id, currency HAVING SUM(amount_minor) <> 0"
        " ORDER BY currency, account, player_id, partner_id",
        lower_ms,
        upper_ms,
    )
    ids = await tx.fetch(
        "SELECT id FROM ledger_entries WHERE created_at_ms >= $1 AND created_at_ms < $2"
        " ORDER BY id LIMIT $3",
        lower_ms,
        upper_ms,
        len(sums),
    )
    return [{**row, "id": int(found["id"])} for row, found in zip(sums, ids, strict=True)]


async def carry_forward(tx: SqlTransaction, rows: list[Row], owner: str, at_ms: int) -> None:
    """The entries that replace an archived month in the ledger: per account, one entry of
    what the month's entries summed to (step ``owner`` / ``carry``, which sums to zero per
    currency as every archived step did), at ``at_ms`` (the first instant of the months kept).
    Each reuses an archived entry's id, so it lies at or below the checkpoint that covered the
    month: the incremental reconciliation (entries after the checkpoint) never reads it, the
    full one sums it like the entries it replaces."""
    for row in rows:
        await tx.execute(
            "INSERT INTO ledger_entries (id, adjustment_id, phase, account, player_id,"
            " partner_id, currency, amount_minor, created_at_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            row["id"],
            owner,
            CARRY_PHASE,
            row["account"],
            row["player_id"],
            row["partner_id"],
            row["currency"],
            int(row["total"]),
            at_ms,
        )
