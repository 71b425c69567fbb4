"""What a partner may read about its own money: its transactions, and daily settlement totals.

Both queries are bounded by the partner and a time range and run through an index that starts
with ``partner_id`` (migration 0010), so their cost grows with the rows in the range asked for,
never with the history stored:

- the listing walks ``ix_transactions_partner_created`` (partner_id, created_at_ms,
  qw_transaction_id) from a keyset position and stops after ``limit + 1`` rows: O(log n + limit);
- the settlement sums the rows of ``ix_transactions_partner_updated`` (partner_id,
  updated_at_ms) inside the requested UTC days: O(log n + rows finished on those days).

**The day of a transaction** is the UTC day (``updated_at_ms // 86_400_000``) of its terminal
step: the confirm or the rollback, whoever made it (the partner, the hold resolver, an
operator). ``updated_at_ms`` is written by that step and never again, because terminal states
never change. Pending transactions belong to no day yet.

**Closed days are summarized once** (migration 0016), ahead of the reports. A day is closed
once it ended ``SETTLE_AFTER_MS`` (10 minutes) ago: ``updated_at_ms`` is stamped by the server
before its transaction commits, so a step stamped 23:59:59.999 can become visible a little after
midnight (a slow commit, another server's clock a little ahead); ten minutes is far beyond any
money call and any clock skew the servers tolerate. ``summarize_day`` computes a closed day's
groups in one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into ``settlement_days`` and marks
it in ``settlement_days_done`` in the same transaction. It is called by the periodic job of
``qwallet serve`` and by ``qwallet db settle`` (``qwallet.service.settlement_days``), and by
``qwallet db archive`` before a month's rows leave; never by a report.

**A report only reads.** ``settlement`` takes the days marked done from ``settlement_days`` (a
few rows per day and currency, whatever the traffic was) and sums every other day of the range
from ``transactions``, one index range per run of consecutive such days: today, and any closed
day the job has not reached yet. Both give the same totals, so the answer does not depend on
how far the job has got; only its cost does. Summaries outlive ``qwallet db archive``: the
settlement of an archived day keeps the totals it had when it was summarized.

Live totals are computed on demand rather than kept in a table. A table maintained in the
money call's transaction would add one UPDATE of the row (partner, day, currency) to every
confirm and rollback: all of a partner's players would queue on that one row lock, which is the
hot row ``docs/architecture.md`` rules out; the index costs the money path one index entry per
step instead, and no lock shared between players.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

from qwallet.domain.money import CurrencyRegistry, format_amount
from qwallet.domain.sessions import MS_PER_DAY
from qwallet.store.sql import Row, SqlDatabase

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
MAX_LISTING_RANGE_MS = 31 * MS_PER_DAY
MAX_SETTLEMENT_DAYS = 31


_LISTING = (
    "SELECT qw_transaction_id, mm_transaction_id, kind, state, player_id, amount_minor,"
    " currency, description, rollback_reason, created_at_ms, updated_at_ms"
    " FROM transactions WHERE partner_id = $1 AND created_at_ms >= $2 AND created_at_ms < $3"
)
_LISTING_ORDER = " ORDER BY created_at_ms, qw_transaction_id LIMIT $4"
LISTING_SQL = _LISTING + _LISTING_ORDER
# After a position, $2 is max(range start, the position's time), so the index range itself starts
# at the position on both databases (SQLite does not seek on a row-value comparison: it would
# filter every row before it, and page k would cost k pages); the OR skips the rows of that same
# millisecond up to the position. The range bounds stay whatever position a cursor names.
LISTING_AFTER_SQL = (
    _LISTING + " AND (created_at_ms > $5 OR qw_transaction_id > $6)" + _LISTING_ORDER
)
SETTLEMENT_SQL = (
    f"SELECT updated_at_ms / {MS_PER_DAY} AS day_number, currency, kind, state,"
    " COUNT(*) AS n, SUM(amount_minor) AS total_minor FROM transactions"
    " WHERE partner_id = $1 AND updated_at_ms >= $2 AND updated_at_ms < $3"
    " AND state IN ('confirmed', 'rolled_back') AND amount_minor IS NOT NULL"
    f" GROUP BY updated_at_ms / {MS_PER_DAY}, currency, kind, state"
)

# A day is closed, and summarized once, when it ended this long ago (see the module docstring).
SETTLE_AFTER_MS = 10 * 60_000
SUMMARIZE_SQL = (
    "INSERT INTO settlement_days (partner_id, day_number, currency, kind, state, n, total_minor)"
    f" SELECT partner_id, updated_at_ms / {MS_PER_DAY}, currency, kind, state,"
    " COUNT(*), SUM(amount_minor) FROM transactions"
    " WHERE partner_id = $1 AND updated_at_ms >= $2 AND updated_at_ms < $3"
    " AND state IN ('confirmed', 'rolled_back') AND amount_minor IS NOT NULL"
    f" GROUP BY partner_id, updated_at_ms / {MS_PER_DAY}, currency, kind, state"
    # In primary-key order: two transactions summing the same day at once (two server
    # processes) then meet on the same first key and wait in one order, never in a cycle.
    f" ORDER BY partner_id, updated_at_ms / {MS_PER_DAY}, currency, kind, state"
    " ON CONFLICT DO NOTHING"
)
MARK_DONE_SQL = (
    "INSERT INTO settlement_days_done (partner_id, day_number) VALUES ($1, $2)"
    " ON CONFLICT DO NOTHING"
)
DONE_SQL = (
    "SELECT day_number FROM settlement_days_done"
    " WHERE partner_id = $1 AND day_number >= $2 AND day_number < $3"
)
STORED_SQL = (
    "SELECT day_number, currency, kind, state, n, total_minor FROM settlement_days"
    " WHERE partner_id = $1 AND day_number >= $2 AND day_number < $3"
)


def closed_before(now_ms: int) -> int:
    """The first day number that is not closed at ``now_ms``: days before it are summarized."""
    return (now_ms - SETTLE_AFTER_MS) // MS_PER_DAY


async def summarize_day(db: SqlDatabase, partner_id: int, day_number: int) -> None:
    """Store the settlement groups of one closed day, once: a second call changes nothing."""
    async with db.transaction() as tx:
        await tx.execute(
            SUMMARIZE_SQL, partner_id, day_number * MS_PER_DAY, (day_number + 1) * MS_PER_DAY
        )
        await tx.execute(MARK_DONE_SQL, partner_id, day_number)


@dataclass(frozen=True, slots=True)
class Position:
    """A keyset position: the last row of the previous page."""

    created_at_ms: int
    qw_transaction_id: str


async def list_transactions(
    db: SqlDatabase,
    partner_id: int,
    from_ms: int,
    to_ms: int,
    limit: int,
    after: Position | None = None,
) -> tuple[list[Row], Position | None]:
    """The partner's transactions created in ``[from_ms, to_ms)``, oldest first, at most
    ``limit`` of them after ``after``; and the position to continue from (None at the end).

    The order (created_at_ms, qw_transaction_id) is total and a row never changes its place in
    it (neither column is ever updated), so paging never repeats a row, and finishing a
    transaction does not move it. A row can still appear behind a page already read when its
    transaction committed after a later-stamped one (concurrent calls, several servers): a range
    that ends a minute or more in the past is complete (``docs/api.md``).
    """
    assert 1 <= limit <= MAX_PAGE_SIZE and from_ms < to_ms, (limit, from_ms, to_ms)
    async with db.transaction() as tx:
        if after is None:
            rows = await tx.fetch(LISTING_SQL, partner_id, from_ms, to_ms, limit + 1)
        else:
            rows = await tx.fetch(
                LISTING_AFTER_SQL,
                partner_id,
                max(from_ms, after.created_at_ms),
                to_ms,
                limit + 1,
                after.created_at_ms,
                after.qw_transaction_id,
            )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Position(int(last["created_at_ms"]), str(last["qw_transaction_id"]))


@dataclass(slots=True)
class DayTotals:
    """One partner's settlement for one UTC day and currency (amounts in minor units)."""

    day: dt.date
    currency: str
    withdrawals_confirmed_count: int = 0
    withdrawals_confirmed_minor: int = 0
    withdrawals_rolled_back_count: int = 0
    withdrawals_rolled_back_minor: int = 0
    deposits_confirmed_count: int = 0
    deposits_confirmed_minor: int = 0
    deposits_rolled_back_count: int = 0
    deposits_rolled_back_minor: int = 0

    @property
    def net_minor(self) -> int:
        """What the partner gained from players that day: confirmed withdrawals (money the
        players spent) minus confirmed deposits (money paid to them). Rollbacks move nothing."""
        return self.withdrawals_confirmed_minor - self.deposits_confirmed_minor


def day_bounds_ms(first_day: dt.date, last_day: dt.date) -> tuple[int, int]:
    """``[start of first_day, end of last_day)`` in epoch milliseconds, UTC."""
    epoch = dt.date(1970, 1, 1)
    return (first_day - epoch).days * MS_PER_DAY, ((last_day - epoch).days + 1) * MS_PER_DAY


def _runs(days: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of consecutive day numbers in ``days`` (ascending): the live
    part of a report reads the rows of those days only, never those of a stored day between."""
    runs: list[tuple[int, int]] = []
    for number in days:
        if runs and runs[-1][1] == number:
            runs[-1] = (runs[-1][0], number + 1)
        else:
            runs.append((number, number + 1))
    return runs


async def settlement(
    db: SqlDatabase, partner_id: int, first_day: dt.date, last_day: dt.date
) -> list[DayTotals]:
    """Per UTC day and currency, from ``first_day`` to ``last_day`` inclusive: the counts and
    sums of the partner's transactions confirmed and rolled back that day, by kind.

    Days and currencies without any finished transaction are left out. A rollback that arrived
    before its original (recorded to block the late original, no amount) moved no money and is
    not counted; the transactions listing shows it with a null amount.

    Read-only: the days in ``settlement_days_done`` are read from ``settlement_days``, the
    others summed from ``transactions``; the result is the same either way.
    """
    assert first_day <= last_day, (first_day, last_day)
    assert (last_day - first_day).days < MAX_SETTLEMENT_DAYS, (first_day, last_day)
    start_ms, end_ms = day_bounds_ms(first_day, last_day)
    first_n, end_n = start_ms // MS_PER_DAY, end_ms // MS_PER_DAY
    rows: list[Row] = []
    # One transaction: a day marked done has its rows committed with the mark.
    async with db.transaction() as tx:
        stored = {
            int(r["day_number"]) for r in await tx.fetch(DONE_SQL, partner_id, first_n, end_n)
        }
        if stored:
            found = await tx.fetch(STORED_SQL, partner_id, min(stored), max(stored) + 1)
            rows += [row for row in found if int(row["day_number"]) in stored]
        for run_start, run_end in _runs([n for n in range(first_n, end_n) if n not in stored]):
            rows += await tx.fetch(
                SETTLEMENT_SQL, partner_id, run_start * MS_PER_DAY, run_end * MS_PER_DAY
            )
    totals: dict[tuple[int, str], DayTotals] = {}
    epoch = dt.date(1970, 1, 1)
    for row in rows:
        day_number, currency = int(row["day_number"]), str(row["currency"])
        entry = totals.get((day_number, currency))
        if entry is None:
            entry = DayTotals(epoch + dt.timedelta(days=day_number), currency)
            totals[(day_number, currency)] = entry
        prefix = "withdrawals" if row["kind"] == "withdrawal" else "deposits"
        suffix = "confirmed" if row["state"] == "confirmed" else "rolled_back"
        setattr(entry, f"{prefix}_{suffix}_count", int(row["n"]))
        setattr(entry, f"{prefix}_{suffix}_minor", int(row["total_minor"]))
    return [totals[key] for key in sorted(totals)]


CSV_COLUMNS = (
    "date",
    "currency",
    "withdrawals_confirmed_count",
    "withdrawals_confirmed_amount",
    "withdrawals_rolled_back_count",
    "withdrawals_rolled_back_amount",
    "deposits_confirmed_count",
    "deposits_confirmed_amount",
    "deposits_rolled_back_count",
    "deposits_rolled_back_amount",
    "net_amount",
)


def csv_row(entry: DayTotals, currencies: CurrencyRegistry) -> list[str | int]:
    """One line of ``CSV_COLUMNS``; amounts with exactly the currency's decimals."""
    currency = currencies[entry.currency]
    return [
        entry.day.isoformat(),
        entry.currency,
        entry.withdrawals_confirmed_count,
        format_amount(entry.withdrawals_confirmed_minor, currency),
        entry.withdrawals_rolled_back_count,
        format_amount(entry.withdrawals_rolled_back_minor, currency),
        entry.deposits_confirmed_count,
        format_amount(entry.deposits_confirmed_minor, currency),
        entry.deposits_rolled_back_count,
        format_amount(entry.deposits_rolled_back_minor, currency),
        format_amount(entry.net_minor, currency),
    ]


def csv_text(
    totals: Sequence[DayTotals],
    currencies: CurrencyRegistry,
    partners: Sequence[str] | None = None,
) -> str:
    """The settlement as CSV (RFC 4180, ``\r\n`` line ends): a header line, one line per day
    and currency. With ``partners`` (one name per line of ``totals``) a first ``partner``
    column says whose line it is (the console's export of every partner)."""
    assert partners is None or len(partners) == len(totals)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if partners is None:
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(entry, currencies) for entry in totals)
    else:
        writer.writerow(("partner", *CSV_COLUMNS))
        for name, entry in zip(partners, totals, strict=True):
            writer.writerow([name, *csv_row(entry, currencies)])
    return out.getvalue()


async def partner_ids(db: SqlDatabase, name: str | None = None) -> list[tuple[str, int]]:
    """(name, id) of the partner called ``name``, or of every partner, by name."""
    async with db.transaction() as tx:
        if name is None:
            rows = await tx.fetch("SELECT name, id FROM partners ORDER BY name")
        else:
            rows = await tx.fetch("SELECT name, id FROM partners WHERE name = $1", name)
    return [(str(row["name"]), int(row["id"])) for row in rows]


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_PAGE_SIZE",
    "LISTING_AFTER_SQL",
    "LISTING_SQL",
    "MAX_LISTING_RANGE_MS",
    "MAX_PAGE_SIZE",
    "MAX_SETTLEMENT_DAYS",
    "SETTLEMENT_SQL",
    "SETTLE_AFTER_MS",
    "DayTotals",
    "Position",
    "closed_before",
    "csv_row",
    "csv_text",
    "day_bounds_ms",
    "list_transactions",
    "partner_ids",
    "settlement",
    "summarize_day",
]
