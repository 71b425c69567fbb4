"""Holds that outlived the partner's retry window: finding them and resolving them.

A resolution is the confirm or rollback the partner never delivered, applied without a session
token by the hold resolver (``qwallet.resolver``) or by an operator. It is one database
transaction holding every effect: the transaction's state change (only ``WHERE state =
'pending'``), exactly the ledger entries of ``ledger.movement(kind, phase, amount)``, the matching
change of the cached balances, and the ``hold_resolutions`` record. A transaction that became
final meanwhile (the partner's own retry got through) is recorded as ``already_final`` and left
alone.

Locking follows the wallet functions' order (player, then transaction): on PostgreSQL the
player's row is locked first (its id never changes, so it is read without a lock), then the
transaction's row, and its state re-read; this cannot deadlock against a concurrent confirm or
rollback, which lock in the same order. SQLite serializes writers already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from qwallet.domain import ledger
from qwallet.domain.ids import is_platform_id
from qwallet.domain.ledger import WalletBalances
from qwallet.domain.transactions import Kind, Phase
from qwallet.service import audit
from qwallet.service.partners import OperatorError
from qwallet.service.where import Where
from qwallet.store import ledger as money
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

Decision = Literal["confirm", "rollback"]
ResolutionAction = Literal["confirmed", "rolled_back", "retry_later", "already_final"]
RESOLVER = "resolver"
MAX_DETAIL_CHARS = 500


@dataclass(frozen=True, slots=True)
class Resolution:
    qw_transaction_id: str
    action: ResolutionAction
    partner_status: str | None
    detail: str | None
    state: str  # the transaction's state after the resolution


async def record_resolution(
    tx: SqlTransaction,
    qw_transaction_id: str,
    *,
    actor: str,
    partner_status: str | None,
    action: ResolutionAction,
    detail: str | None,
    now_ms: int,
) -> None:
    await tx.execute(
        "INSERT INTO hold_resolutions (qw_transaction_id, at_ms, actor, partner_status, action,"
        " detail) VALUES ($1, $2, $3, $4, $5, $6)",
        qw_transaction_id,
        now_ms,
        actor,
        partner_status,
        action,
        None if detail is None else detail[:MAX_DETAIL_CHARS],
    )


async def retry_later(
    db: SqlDatabase,
    qw_transaction_id: str,
    *,
    actor: str,
    partner_status: str | None,
    detail: str | None,
    now_ms: int,
) -> Resolution:
    """Record that the partner gave no final answer; nothing else changes."""
    async with db.transaction() as tx:
        await record_resolution(
            tx,
            qw_transaction_id,
            actor=actor,
            partner_status=partner_status,
            action="retry_later",
            detail=detail,
            now_ms=now_ms,
        )
    return Resolution(qw_transaction_id, "retry_later", partner_status, detail, "pending")


async def resolve(
    db: SqlDatabase,
    qw_transaction_id: str,
    decision: Decision,
    *,
    actor: str,
    partner_status: str | None,
    detail: str | None,
    now_ms: int,
) -> Resolution:
    """Confirm or roll back a pending transaction in one database transaction."""
    async with db.transaction() as tx:
        return await _resolve_in(
            tx,
            db.dialect,
            qw_transaction_id,
            decision,
            actor=actor,
            partner_status=partner_status,
            detail=detail,
            now_ms=now_ms,
        )


async def resolve_by_operator(
    db: SqlDatabase,
    qw_transaction_id: str,
    decision: Decision,
    reason: str,
    *,
    operator: str,
    now_ms: int,
) -> Resolution:
    """An operator's confirm or rollback of a hold (the console's resolve form): the
    resolution, its ledger entries and the ``transaction.resolve`` audit entry are one
    transaction. The reason is mandatory."""
    reason = reason.strip()
    if not reason:
        raise OperatorError("a resolution needs a reason")
    if len(reason) > MAX_DETAIL_CHARS:
        raise OperatorError(f"a reason is at most {MAX_DETAIL_CHARS} characters")
    if decision not in ("confirm", "rollback"):
        raise OperatorError("the decision is confirm or rollback")
    async with db.transaction() as tx:
        result = await _resolve_in(
            tx,
            db.dialect,
            qw_transaction_id,
            decision,
            actor=operator,
            partner_status=None,
            detail=reason,
            now_ms=now_ms,
        )
        details = {"decision": decision, "reason": reason, "result": result.action}
        await audit.record(tx, operator, "transaction.resolve", qw_transaction_id, details, now_ms)
    return result


class ResolvedHold(Protocol):
    """One outcome of a resolver pass (``qwallet.resolver.Outcome``)."""

    @property
    def resolution(self) -> Resolution: ...


Outcome = TypeVar("Outcome", bound=ResolvedHold)


async def run_resolver_pass(
    db: SqlDatabase,
    run_once: Callable[[], Awaitable[Sequence[Outcome]]],
    *,
    operator: str,
    now_ms: Callable[[], int],
) -> tuple[Sequence[Outcome], dict[str, int]]:
    """An operator's resolver pass (console button, ``qwallet resolver run-once``).

    A pass asks partners over HTTP and applies each answer in its own transaction, recorded in
    ``hold_resolutions`` with the change; it cannot be one transaction. What the operator did
    (``resolver.run``, with the count of each action) is recorded when the pass ends.
    """
    outcomes = await run_once()
    summary: dict[str, int] = {}
    for outcome in outcomes:
        action = outcome.resolution.action
        summary[action] = summary.get(action, 0) + 1
    async with db.transaction() as tx:
        await audit.record(tx, operator, "resolver.run", None, summary, now_ms())
    return outcomes, summary


async def _resolve_in(
    tx: SqlTransaction,
    dialect: str,
    qw_transaction_id: str,
    decision: Decision,
    *,
    actor: str,
    partner_status: str | None,
    detail: str | None,
    now_ms: int,
) -> Resolution:
    lock = " FOR UPDATE" if dialect == "postgresql" else ""
    phase = Phase.CONFIRM if decision == "confirm" else Phase.ROLLBACK
    if not is_platform_id(qw_transaction_id):  # an operator's typing: unknown, not a 500
        raise OperatorError(f"no transaction {qw_transaction_id[:60]}")
    found = await tx.fetchrow(
        "SELECT player_id FROM transactions WHERE qw_transaction_id = $1", qw_transaction_id
    )
    if found is None:
        raise OperatorError(f"no transaction {qw_transaction_id}")
    player = await tx.fetchrow(
        "SELECT available_minor, held_minor, pending_in_minor FROM players WHERE id = $1" + lock,
        found["player_id"],
    )
    row = await tx.fetchrow(
        "SELECT qw_transaction_id, partner_id, kind, player_id, amount_minor, currency, state"
        " FROM transactions WHERE qw_transaction_id = $1" + lock,
        qw_transaction_id,
    )
    assert player is not None and row is not None
    if row["state"] != "pending":
        return await _already_final(tx, row, actor, partner_status, detail, now_ms)
    amount_minor = int(row["amount_minor"])
    entries = ledger.movement(Kind(row["kind"]), phase, amount_minor)
    before = WalletBalances(
        int(player["available_minor"]),
        int(player["held_minor"]),
        int(player["pending_in_minor"]),
    )
    after = before.apply(entries)
    state = "confirmed" if decision == "confirm" else "rolled_back"
    changed = await tx.execute(
        "UPDATE transactions SET state = $1, final_balance_minor = $2, rollback_reason = $3,"
        " updated_at_ms = $4 WHERE qw_transaction_id = $5 AND state = 'pending'",
        state,
        after.available_minor,
        None if decision == "confirm" else _reason(actor, partner_status),
        now_ms,
        qw_transaction_id,
    )
    if changed != 1:  # final meanwhile (a writer that skipped the lock): leave it alone
        return await _already_final(tx, row, actor, partner_status, detail, now_ms)
    await money.move_wallet(tx, str(row["player_id"]), before, after)
    await money.append_transaction_entries(
        tx,
        qw_transaction_id,
        phase,
        entries,
        player_id=str(row["player_id"]),
        partner_id=int(row["partner_id"]),
        currency=str(row["currency"]),
        now_ms=now_ms,
    )
    action: ResolutionAction = "confirmed" if decision == "confirm" else "rolled_back"
    await record_resolution(
        tx,
        qw_transaction_id,
        actor=actor,
        partner_status=partner_status,
        action=action,
        detail=detail,
        now_ms=now_ms,
    )
    return Resolution(qw_transaction_id, action, partner_status, detail, state)


def _reason(actor: str, partner_status: str | None) -> str:
    if actor == RESOLVER:
        return f"hold resolver: partner answered {partner_status}"
    return f"rolled back by operator {actor}"


async def _already_final(
    tx: SqlTransaction,
    row: Row,
    actor: str,
    partner_status: str | None,
    detail: str | None,
    now_ms: int,
) -> Resolution:
    state = str(row["state"])
    note = f"transaction was already {state}"
    await record_resolution(
        tx,
        str(row["qw_transaction_id"]),
        actor=actor,
        partner_status=partner_status,
        action="already_final",
        detail=f"{note}; {detail}" if detail else note,
        now_ms=now_ms,
    )
    return Resolution(str(row["qw_transaction_id"]), "already_final", partner_status, note, state)


# -- finding overdue holds -------------------------------------------------------------------

# Cost: a range of the partial index ix_transactions_pending (created_at_ms <= cutoff, the kind
# checked in the index) and, per pending hold, two lookups of ix_hold_resolutions_transaction:
# it grows with the backlog of overdue holds and their resolution attempts, never with settled
# history.
_OVERDUE = """
SELECT t.qw_transaction_id, t.mm_transaction_id, t.kind, t.partner_id, t.player_id,
       t.amount_minor, t.currency, t.created_at_ms,
       p.name AS partner, p.query_url, p.query_username, p.query_password,
       (SELECT COUNT(*) FROM hold_resolutions r
         WHERE r.qw_transaction_id = t.qw_transaction_id AND r.action = 'retry_later') AS retries,
       (SELECT MAX(r.at_ms) FROM hold_resolutions r
         WHERE r.qw_transaction_id = t.qw_transaction_id) AS last_attempt_at_ms
FROM transactions t JOIN partners p ON p.id = t.partner_id
WHERE t.state = 'pending' AND t.kind = $1 AND t.created_at_ms <= $2
ORDER BY COALESCE((SELECT MAX(r.at_ms) FROM hold_resolutions r
                    WHERE r.qw_transaction_id = t.qw_transaction_id), 0),
         t.created_at_ms
LIMIT $3
"""


async def overdue(db: SqlDatabase, kind: Kind, cutoff_ms: int, limit: int) -> list[Row]:
    """Pending transactions of ``kind`` created at or before ``cutoff_ms``: never-asked ones
    first, then the least recently asked."""
    async with db.transaction() as tx:
        return await tx.fetch(_OVERDUE, kind.value, cutoff_ms, limit)


async def resolutions(
    db: SqlDatabase,
    *,
    qw_transaction_id: str | None = None,
    action: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Row]:
    """The resolution log, newest first: ``limit`` rows with an id below ``before_id`` (a
    keyset page). Cost: a backward range of the primary key (or ``ix_hold_resolutions_transaction``
    for one transaction) plus a primary-key lookup per row, whatever the log's length."""
    where = Where()
    if qw_transaction_id is not None:
        if not is_platform_id(qw_transaction_id):
            return []  # no resolution names it (and a uuid column refuses the comparison)
        where.add("r.qw_transaction_id = ?", qw_transaction_id)
    if action is not None:
        where.add("r.action = ?", action)
    if before_id is not None:
        where.add("r.id < ?", before_id)
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT r.id, r.qw_transaction_id, r.at_ms, r.actor, r.partner_status, r.action,"
            " r.detail, t.mm_transaction_id, t.kind, t.currency, t.amount_minor, t.player_id,"
            " p.name AS partner"
            " FROM hold_resolutions r"
            " LEFT JOIN transactions t ON t.qw_transaction_id = r.qw_transaction_id"
            f" LEFT JOIN partners p ON p.id = t.partner_id{where.sql}"
            f" ORDER BY r.id DESC LIMIT {where.next_placeholder()}",
            *where.args,
            limit,
        )
