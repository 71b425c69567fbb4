"""What ``/metrics`` reads from the database: pending and overdue holds, the newest
reconciliation. The exposition and its cache are ``qwallet.api.metrics``."""

from __future__ import annotations

from dataclasses import dataclass

from qwallet.store.sql import SqlDatabase


@dataclass(frozen=True, slots=True)
class DatabaseGauges:
    """What ``/metrics`` reads from the database, in one transaction."""

    pending_holds: int
    pending_hold_minor: dict[str, int]
    overdue_holds: int
    # (time in ms, ok) of the newest recorded reconciliation, None if none was recorded.
    last_reconcile: tuple[int, bool] | None


# Cost: the partial index ix_transactions_pending (the pending backlog, the kind checked in the
# index) and the newest reconcile_runs row by primary key: neither grows with settled history.
_PENDING = (
    "SELECT currency, COUNT(*) AS holds, SUM(amount_minor) AS held,"
    " SUM(CASE WHEN created_at_ms <= $1 THEN 1 ELSE 0 END) AS overdue"
    " FROM transactions WHERE state = 'pending' AND kind = 'withdrawal' GROUP BY currency"
)
_LAST_RECONCILE = "SELECT at_ms, ok FROM reconcile_runs ORDER BY id DESC LIMIT 1"


async def read_database_gauges(store: SqlDatabase, overdue_cutoff_ms: int) -> DatabaseGauges:
    """Pending withdrawals (held amounts per currency, how many were created at or before
    ``overdue_cutoff_ms``: the hold resolver's window) and the newest reconciliation result."""
    async with store.transaction() as tx:
        rows = await tx.fetch(_PENDING, overdue_cutoff_ms)
        reconciled = await tx.fetchrow(_LAST_RECONCILE)
    return DatabaseGauges(
        pending_holds=sum(int(row["holds"]) for row in rows),
        pending_hold_minor={str(row["currency"]): int(row["held"]) for row in rows},
        overdue_holds=sum(int(row["overdue"]) for row in rows),
        last_reconcile=(
            None if reconciled is None else (int(reconciled["at_ms"]), bool(reconciled["ok"]))
        ),
    )
