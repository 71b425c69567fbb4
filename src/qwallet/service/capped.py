"""Counts that stop: how many rows match, read up to ``COUNT_CAP + 1`` of them.

A ``COUNT(*)`` reads every matching row, so a count of a state that keeps growing (delivered
orders, a pending backlog during a partner's outage) costs as much as the rows it counts. A
capped count walks an index range and stops after ``COUNT_CAP + 1`` rows: exact up to the cap,
shown as "10000+" above it (``shown``), and never dearer than ``COUNT_CAP + 1`` index entries.
"""

from __future__ import annotations

from qwallet.store.sql import SqlTransaction

COUNT_CAP = 10_000


async def capped_count(tx: SqlTransaction, source: str, order_by: str, *args: object) -> int:
    """Rows of ``source`` (``FROM … WHERE …`` with ``$1…$n`` for ``args``), at most
    ``COUNT_CAP + 1``. ``order_by`` names the columns of the index the range should walk: the
    ORDER BY makes the capped range an index walk for a common value too (without it
    PostgreSQL may read the table until it has the cap)."""
    row = await tx.fetchrow(
        f"SELECT COUNT(*) AS n FROM (SELECT 1 {source} ORDER BY {order_by}"
        f" LIMIT ${len(args) + 1}) capped",
        *args,
        COUNT_CAP + 1,
    )
    return 0 if row is None else int(row["n"])


def shown(count: int) -> str:
    """A capped count as the console shows it: the number, or "10000+" above the cap."""
    return str(count) if count <= COUNT_CAP else f"{COUNT_CAP}+"
