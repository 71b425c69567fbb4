"""Summarizing closed settlement days ahead of the reports (``settlement_days``, migration 0016).

The settlement report (``partner_reports.settlement``) reads a closed day from
``settlement_days`` once ``settlement_days_done`` has it, and sums the other days from
``transactions``. This module writes those rows, outside any request: ``qwallet serve`` runs a
pass every ``QWALLET_SETTLEMENT_INTERVAL_S`` (``running``), and ``qwallet db settle`` catches up
after an upgrade (``backlog`` then ``partner_reports.summarize_day`` for each day).

**Which days.** For each partner, the closed days (``partner_reports.closed_before``) from a
horizon on that are not in ``settlement_days_done``. The horizon is the UTC day of the partner's
oldest transaction still stored (one seek of ``ix_transactions_partner_updated``), or
``--since`` when that is later: before it nothing is left to sum (``qwallet db archive`` stores
a month's days before its rows leave). Days without any finished transaction are marked done
too, so a report covering them reads nothing from ``transactions``.

**Cost.** Finding the days reads the primary key of ``settlement_days_done`` (partner_id,
day_number) from a position on, at most ``SCAN_DAYS`` marks per query: it never reads
``transactions`` beyond the horizon's seek. A pass keeps, per partner, the first day it has not
seen done (``Summarizer.cursors``), so in a running server a pass reads the marks of the days
closed since the previous one: O(partners * (log n + new days)); only a process's first pass
walks from the horizon, O(partners * days kept), index-only. Summing a day reads that day's rows
through ``ix_transactions_partner_updated``: O(log n + rows finished that day), whatever the
history. A pass sums at most ``MAX_DAYS_PER_PASS`` days, taken in turn from each partner, so a
backlog after an upgrade drains over a few passes without one pass holding the database long.

**Several processes.** Every ``qwallet serve`` process runs the job and nothing elects one: a
day is one transaction (``summarize_day``: ``INSERT … SELECT … ON CONFLICT DO NOTHING`` and its
mark), and two processes summing the same closed day compute the same rows, because its
transactions are terminal and no step can be stamped on it any more. Whichever commits first
keeps its rows; the other's inserts conflict and do nothing (on PostgreSQL it waits for the
first to commit, then skips). The rows are inserted in primary-key order, so two such
transactions wait on each other in one order only and cannot deadlock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from qwallet.domain.sessions import MS_PER_DAY
from qwallet.service import partner_reports
from qwallet.service.partners import OperatorError
from qwallet.store.sql import SqlDatabase

log = logging.getLogger("qwallet.service.settlement_days")

# Days summed by one pass of the periodic job, across partners (one transaction each).
MAX_DAYS_PER_PASS = 200
# Done marks read by one query while looking for the days to do.
SCAN_DAYS = 400
# After a pass that hit MAX_DAYS_PER_PASS, the next one starts after this pause, not after the
# whole interval: a backlog drains in minutes, with room for the other work between passes.
BACKLOG_PAUSE_S = 1.0
# How long a stopping server waits for the day being summed before it cancels it (rolled back).
STOP_TIMEOUT_S = 30.0

HORIZON_SQL = (
    "SELECT updated_at_ms FROM transactions WHERE partner_id = $1 ORDER BY updated_at_ms LIMIT 1"
)
DONE_SCAN_SQL = (
    "SELECT day_number FROM settlement_days_done"
    " WHERE partner_id = $1 AND day_number >= $2 AND day_number < $3 ORDER BY day_number"
)
PARTNERS_SQL = "SELECT id, name FROM partners ORDER BY id"

# (ok, days summed) of one pass of the periodic job.
PassObserver = Callable[[bool, int], None]
EPOCH = dt.date(1970, 1, 1)


def day_number(day: dt.date) -> int:
    return (day - EPOCH).days


async def horizon(db: SqlDatabase, partner_id: int) -> int | None:
    """The day of the partner's oldest stored transaction (its earliest step: a pending row's
    stamp is its creation, before any terminal step), or None when it has none."""
    async with db.transaction() as tx:
        row = await tx.fetchrow(HORIZON_SQL, partner_id)
    return None if row is None else int(row["updated_at_ms"]) // MS_PER_DAY


async def undone_days(
    db: SqlDatabase, partner_id: int, start: int, end: int, limit: int | None = None
) -> tuple[list[int], int]:
    """The days in ``[start, end)`` not in ``settlement_days_done``, oldest first, at most
    ``limit`` of them; and the day up to which the marks were read (every day before it that is
    not listed is done). Reads ``SCAN_DAYS`` marks per query on the primary key."""
    found: list[int] = []
    position = start
    while position < end and (limit is None or len(found) < limit):
        upper = min(end, position + SCAN_DAYS)
        async with db.transaction() as tx:
            rows = await tx.fetch(DONE_SCAN_SQL, partner_id, position, upper)
        done = {int(row["day_number"]) for row in rows}
        for number in range(position, upper):
            if number not in done:
                found.append(number)
                if limit is not None and len(found) == limit:
                    return found, number + 1
        position = upper
    return found, max(position, start)


async def partners(db: SqlDatabase, name: str | None = None) -> list[tuple[int, str]]:
    """(id, name) of every partner, or of the one called ``name`` (an ``OperatorError`` when
    there is none)."""
    if name is None:
        async with db.transaction() as tx:
            rows = await tx.fetch(PARTNERS_SQL)
        return [(int(row["id"]), str(row["name"])) for row in rows]
    found = await partner_reports.partner_ids(db, name)
    if not found:
        raise OperatorError(f"no partner {name!r}")
    return [(partner_id, partner_name) for partner_name, partner_id in found]


@dataclass(frozen=True, slots=True)
class Backlog:
    """One partner's closed days still to summarize, oldest first."""

    partner_id: int
    name: str
    days: list[int]


async def backlog(
    db: SqlDatabase,
    now_ms: int,
    *,
    since: dt.date | None = None,
    partner: str | None = None,
) -> list[Backlog]:
    """Every closed day not summarized yet, per partner (``qwallet db settle``), from the
    partner's horizon or ``since`` if later. Only reads: an unknown partner writes nothing."""
    end = partner_reports.closed_before(now_ms)
    result: list[Backlog] = []
    for partner_id, name in await partners(db, partner):
        first = await horizon(db, partner_id)
        if first is None:
            continue
        if since is not None:
            first = max(first, day_number(since))
        days, _ = await undone_days(db, partner_id, first, end)
        if days:
            result.append(Backlog(partner_id, name, days))
    return result


def in_turn(backlogs: Sequence[Backlog]) -> Iterable[tuple[int, int]]:
    """(partner_id, day) taking each partner's oldest day in turn: a partner with a long
    backlog does not hold back the others' newest days."""
    for index in range(max((len(b.days) for b in backlogs), default=0)):
        for item in backlogs:
            if index < len(item.days):
                yield item.partner_id, item.days[index]


@dataclass(slots=True)
class Summarizer:
    """The periodic job's state: per partner, the first day not yet seen done."""

    db: SqlDatabase
    max_days: int = MAX_DAYS_PER_PASS
    cursors: dict[int, int] = field(default_factory=dict)
    on_pass: PassObserver | None = None
    """Told of every pass the job makes (``run``): ok or not, and the days it summed."""

    async def run_once(self, now_ms: int, stop: asyncio.Event | None = None) -> int:
        """One pass: sum at most ``max_days`` closed days not summarized yet, in turn across
        partners, each in its own transaction. Returns how many it summed. A set ``stop``
        ends the pass after the day being summed."""
        end = partner_reports.closed_before(now_ms)
        backlogs: list[Backlog] = []
        seen: dict[int, int] = {}
        for partner_id, name in await partners(self.db):
            start = self.cursors.get(partner_id)
            if start is None:
                start = await horizon(self.db, partner_id)
                if start is None:
                    continue  # no transaction yet; its first one will give the horizon
            days, seen[partner_id] = await undone_days(
                self.db, partner_id, start, end, self.max_days
            )
            backlogs.append(Backlog(partner_id, name, days))
        summed: set[tuple[int, int]] = set()
        for partner_id, number in in_turn(backlogs):
            if len(summed) >= self.max_days or (stop is not None and stop.is_set()):
                break
            await partner_reports.summarize_day(self.db, partner_id, number)
            summed.add((partner_id, number))
        for item in backlogs:
            left = [n for n in item.days if (item.partner_id, n) not in summed]
            self.cursors[item.partner_id] = left[0] if left else seen[item.partner_id]
        return len(summed)

    async def run(self, now_ms: Callable[[], int], interval_s: float, stop: asyncio.Event) -> None:
        """Passes until ``stop`` is set, ``interval_s`` apart (``BACKLOG_PAUSE_S`` after a full
        pass). The first one comes an interval after startup: a server starts as fast as
        before, and processes restarted together do not all scan at once. A failed pass is
        logged and the next one tries again: meanwhile the report sums the day live."""
        pause = interval_s
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)
            if stop.is_set():
                return
            summed = 0
            try:
                summed = await self.run_once(now_ms(), stop)
                if summed:
                    log.info("settlement: %d closed day(s) summarized", summed)
                ok = True
            except Exception:
                log.exception("settlement pass failed; retrying in %.0f s", interval_s)
                ok = False
            if self.on_pass is not None:
                self.on_pass(ok, summed)
            pause = BACKLOG_PAUSE_S if summed >= self.max_days else interval_s


@asynccontextmanager
async def running(
    db: SqlDatabase,
    now_ms: Callable[[], int],
    interval_s: float,
    on_pass: PassObserver | None = None,
) -> AsyncIterator[Summarizer | None]:
    """Run the summarizer in the background while the block runs (``serve``'s lifespan); off
    when ``interval_s`` is 0. Leaving the block finishes the day being summed (one short
    transaction) and stops; a day cut off after ``STOP_TIMEOUT_S`` rolls back whole.
    ``on_pass`` is told of each pass (``/metrics``: the composition root hands it in)."""
    if interval_s <= 0:
        yield None
        return
    summarizer = Summarizer(db, on_pass=on_pass)
    stop = asyncio.Event()
    task = asyncio.create_task(
        summarizer.run(now_ms, interval_s, stop), name="qwallet-settlement-days"
    )
    try:
        yield summarizer
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=STOP_TIMEOUT_S)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


__all__ = [
    "MAX_DAYS_PER_PASS",
    "Backlog",
    "PassObserver",
    "Summarizer",
    "backlog",
    "day_number",
    "horizon",
    "in_turn",
    "partners",
    "running",
    "undone_days",
]
