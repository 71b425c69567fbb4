"""Reconciliation: prove the cached balances against the append-only ledger.

Checks, each a single query so it runs on either database:

1. every step of every transaction or adjustment sums to zero per currency;
2. every wallet's ``available`` / ``held`` / ``pending_in`` equal the sums of its entries;
3. ``held`` equals the pending withdrawals and ``pending_in`` the pending deposits;
4. every transaction has exactly the entries its state implies (2 while pending, 4 when final,
   none for a rollback that arrived before its original).

``reconcile`` only reads. ``run_reconcile`` is the operator's run (console, ``qwallet
reconcile``): the same checks with a ``reconcile.run`` audit entry and a ``reconcile_runs`` row
(time, ok, number of differences) in the same transaction, so the log shows what the checks saw
and every server's ``/metrics`` exports the newest result (``qwallet_reconcile_last_ok``)
whichever process ran it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwallet.service import audit
from qwallet.store.sql import SqlDatabase, SqlTransaction

MAX_LISTED = 100

_UNBALANCED = """
SELECT COALESCE(transaction_id, adjustment_id) AS owner, phase, currency,
       SUM(amount_minor) AS total
FROM ledger_entries
GROUP BY COALESCE(transaction_id, adjustment_id), phase, currency
HAVING SUM(amount_minor) <> 0
"""

_BALANCES = """
SELECT * FROM (
    SELECT p.id, p.available_minor, p.held_minor, p.pending_in_minor,
        COALESCE(SUM(CASE WHEN e.account = 'available' THEN e.amount_minor END), 0) AS available,
        COALESCE(SUM(CASE WHEN e.account = 'held' THEN e.amount_minor END), 0) AS held,
        COALESCE(SUM(CASE WHEN e.account = 'pending_in' THEN e.amount_minor END), 0) AS pending_in
    FROM players p LEFT JOIN ledger_entries e ON e.player_id = p.id
    GROUP BY p.id, p.available_minor, p.held_minor, p.pending_in_minor
) sums
WHERE available_minor <> available OR held_minor <> held OR pending_in_minor <> pending_in
   OR available_minor < 0 OR held_minor < 0 OR pending_in_minor < 0
"""

_HOLDS = """
SELECT p.id, p.held_minor, p.pending_in_minor,
       COALESCE(t.withdrawals, 0) AS withdrawals, COALESCE(t.deposits, 0) AS deposits
FROM players p LEFT JOIN (
    SELECT player_id,
           SUM(CASE WHEN kind = 'withdrawal' THEN amount_minor ELSE 0 END) AS withdrawals,
           SUM(CASE WHEN kind = 'deposit' THEN amount_minor ELSE 0 END) AS deposits
    FROM transactions WHERE state = 'pending' GROUP BY player_id
) t ON t.player_id = p.id
WHERE p.held_minor <> COALESCE(t.withdrawals, 0) OR p.pending_in_minor <> COALESCE(t.deposits, 0)
"""

_ENTRY_COUNTS = """
SELECT t.qw_transaction_id, t.state, COUNT(e.id) AS entries
FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.qw_transaction_id
GROUP BY t.qw_transaction_id, t.state, t.amount_minor
HAVING COUNT(e.id) <> CASE WHEN t.amount_minor IS NULL THEN 0
                           WHEN t.state = 'pending' THEN 2 ELSE 4 END
"""

_COUNTS = """
SELECT (SELECT COUNT(*) FROM players) AS players,
       (SELECT COUNT(*) FROM transactions) AS transactions,
       (SELECT COUNT(*) FROM ledger_entries) AS entries
"""


@dataclass
class ReconciliationReport:
    players: int = 0
    transactions: int = 0
    entries: int = 0
    unbalanced: list[dict[str, Any]] = field(default_factory=list)
    balance_mismatches: list[dict[str, Any]] = field(default_factory=list)
    hold_mismatches: list[dict[str, Any]] = field(default_factory=list)
    entry_count_mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """How many differences were listed (each kind is capped at ``MAX_LISTED``)."""
        return (
            len(self.unbalanced)
            + len(self.balance_mismatches)
            + len(self.hold_mismatches)
            + len(self.entry_count_mismatches)
        )

    @property
    def ok(self) -> bool:
        return not (
            self.unbalanced
            or self.balance_mismatches
            or self.hold_mismatches
            or self.entry_count_mismatches
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "players": self.players,
            "transactions": self.transactions,
            "entries": self.entries,
            "unbalanced": self.unbalanced,
            "balanceMismatches": self.balance_mismatches,
            "holdMismatches": self.hold_mismatches,
            "entryCountMismatches": self.entry_count_mismatches,
        }


async def reconcile(db: SqlDatabase) -> ReconciliationReport:
    """Run every check, reading only."""
    async with db.transaction() as tx:
        return await _reconcile_in(tx)


async def last_run(db: SqlDatabase) -> tuple[int, bool] | None:
    """(time in ms, ok) of the newest recorded run, or ``None`` when none was recorded."""
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT at_ms, ok FROM reconcile_runs ORDER BY id DESC LIMIT 1")
    return None if row is None else (int(row["at_ms"]), bool(row["ok"]))


async def run_reconcile(db: SqlDatabase, *, operator: str, now_ms: int) -> ReconciliationReport:
    async with db.transaction() as tx:
        report = await _reconcile_in(tx)
        details = {"ok": report.ok, "players": report.players, "transactions": report.transactions}
        await audit.record(tx, operator, "reconcile.run", None, details, now_ms)
        await tx.execute(
            "INSERT INTO reconcile_runs (at_ms, ok, problems) VALUES ($1, $2, $3)",
            now_ms,
            int(report.ok),
            report.problems,
        )
    return report


async def _reconcile_in(tx: SqlTransaction) -> ReconciliationReport:
    counts = await tx.fetchrow(_COUNTS)
    assert counts is not None
    report = ReconciliationReport(
        players=int(counts["players"]),
        transactions=int(counts["transactions"]),
        entries=int(counts["entries"]),
    )
    for query, target in (
        (_UNBALANCED, report.unbalanced),
        (_BALANCES, report.balance_mismatches),
        (_HOLDS, report.hold_mismatches),
        (_ENTRY_COUNTS, report.entry_count_mismatches),
    ):
        rows = await tx.fetch(query)
        target.extend(
            {key: _plain(value) for key, value in row.items()} for row in rows[:MAX_LISTED]
        )
    return report


def _plain(value: Any) -> Any:
    return int(value) if hasattr(value, "__int__") and not isinstance(value, str) else value
