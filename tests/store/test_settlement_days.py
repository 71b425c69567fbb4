"""Stored settlement days (migration 0016) give exactly the totals computed from transactions.

On both databases. The summarizer (``qwallet.service.settlement_days``, the periodic job of
``serve`` and ``qwallet db settle``) stores the closed days once, from the partner's oldest
stored transaction on, and never a day still inside the safety margin; the report only reads,
and equals the live computation day by day, over currencies, both kinds, confirmed and rolled
back rows, a row at the last millisecond of a day and one at the first of the next, a pending
row and an early rollback without amount. A stored day keeps its totals once its transactions
are gone (as after ``qwallet db archive``); summarizing again changes nothing, also when two
summarizers on two stores run at once; a pass sums at most its cap, in turn across partners.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from qwallet.service import partner_reports as reports
from qwallet.service import settlement_days
from qwallet.service.partners import OperatorError
from qwallet.store.sql import SqlDatabase
from tests.store.conftest import Backend
from tests.store.world import (
    DAY_MS,
    MINUTE_MS,
    NOW_MS,
    OTHER_PARTNER,
    PARTNER,
    add_partner,
    add_player,
    count,
)

TODAY = NOW_MS // DAY_MS
EPOCH = dt.date(1970, 1, 1)


def day(number: int) -> dt.date:
    return EPOCH + dt.timedelta(days=number)


async def add_row(
    db: SqlDatabase,
    at_ms: int,
    *,
    kind: str = "withdrawal",
    state: str = "confirmed",
    amount_minor: int | None = 1_000,
    currency: str = "XAG",
    partner_id: int = PARTNER,
) -> None:
    player = "p3" if currency == "EUR" else "p1"
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id,"
            " player_id, amount_minor, currency, state, created_at_ms, updated_at_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            str(uuid.uuid4()),
            partner_id,
            kind,
            f"mm-{uuid.uuid4().hex}",
            player,
            amount_minor,
            currency,
            state,
            at_ms - 1,
            at_ms,
        )


async def world(db: SqlDatabase) -> None:
    await add_partner(db, PARTNER, "mm")
    await add_partner(db, OTHER_PARTNER, "other")
    await add_player(db, "p1")
    await add_player(db, "p3", currency="EUR")
    # TODAY - 3 has nothing finished (only a pending row): summarized empty.
    await add_row(db, (TODAY - 3) * DAY_MS + 5, state="pending")
    for number in (TODAY - 2, TODAY - 1, TODAY):
        start = number * DAY_MS
        await add_row(db, start + 1_000, amount_minor=700)
        await add_row(db, start + 2_000, amount_minor=300)
        await add_row(db, start + 3_000, state="rolled_back", amount_minor=50)
        await add_row(db, start + 4_000, kind="deposit", amount_minor=250)
        await add_row(db, start + 5_000, kind="deposit", state="rolled_back", amount_minor=25)
        await add_row(db, start + 6_000, currency="EUR", amount_minor=999)
        await add_row(db, start + 7_000, kind="deposit", state="rolled_back", amount_minor=None)
        await add_row(db, start + 8_000, partner_id=OTHER_PARTNER, amount_minor=123_456)
    # Either side of the boundary between TODAY - 2 and TODAY - 1.
    await add_row(db, (TODAY - 1) * DAY_MS - 1, amount_minor=11)
    await add_row(db, (TODAY - 1) * DAY_MS, amount_minor=13)


async def live(db: SqlDatabase) -> list[reports.DayTotals]:
    return await reports.settlement(db, PARTNER, day(TODAY - 4), day(TODAY + 1))


async def summarized(db: SqlDatabase, now_ms: int) -> list[reports.DayTotals]:
    """What the report answers once a fresh summarizer has run at ``now_ms``."""
    await settlement_days.Summarizer(db).run_once(now_ms)
    return await live(db)


async def done_days(db: SqlDatabase, partner_id: int = PARTNER) -> list[int]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT day_number FROM settlement_days_done WHERE partner_id = $1 ORDER BY day_number",
            partner_id,
        )
    return [int(row["day_number"]) for row in rows]


async def stored_rows(db: SqlDatabase) -> list[tuple[object, ...]]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT partner_id, day_number, currency, kind, state, n, total_minor"
            " FROM settlement_days ORDER BY partner_id, day_number, currency, kind, state"
        )
    return [tuple(row.values()) for row in rows]


# Five minutes into the next day: TODAY is inside the margin and is not summarized.
EARLY_MS = (TODAY + 1) * DAY_MS + 5 * MINUTE_MS
LATER_MS = (TODAY + 1) * DAY_MS + reports.SETTLE_AFTER_MS


def test_stored_days_equal_the_live_computation(backend: Backend) -> None:
    async def scenario(db: SqlDatabase) -> None:
        await world(db)
        expected = await live(db)
        assert [entry.day for entry in expected] == [
            day(TODAY - 2), day(TODAY - 2), day(TODAY - 1), day(TODAY - 1), day(TODAY),
            day(TODAY),
        ]  # fmt: skip
        boundary = expected[2] if expected[2].currency == "XAG" else expected[3]
        assert boundary.withdrawals_confirmed_count == 3
        assert boundary.withdrawals_confirmed_minor == 1_013

        # From the oldest stored transaction's day (TODAY - 3: a pending row, nothing
        # finished, summarized empty), up to the last closed day.
        assert await summarized(db, EARLY_MS) == expected
        assert await done_days(db) == [TODAY - 3, TODAY - 2, TODAY - 1]
        assert await done_days(db, OTHER_PARTNER) == [TODAY - 2, TODAY - 1]
        rows = await count(db, "SELECT COUNT(*) FROM settlement_days WHERE partner_id = $1", 1)
        assert rows == 2 * 5  # two days of (4 XAG groups + 1 EUR group)

        # A late terminal step of TODAY is still counted: the day was not stored.
        await add_row(db, (TODAY + 1) * DAY_MS - 1, amount_minor=17)
        expected = await live(db)
        assert await summarized(db, EARLY_MS) == expected

        # Read back, not recomputed: the stored days keep their totals once their
        # transactions are gone (an archived partition).
        async with db.transaction() as tx:
            await tx.execute(
                "DELETE FROM transactions WHERE updated_at_ms < $1", (TODAY - 1) * DAY_MS
            )
        assert await live(db) == expected
        async with db.transaction() as tx:
            sums = await tx.fetch(reports.SETTLEMENT_SQL, PARTNER, 0, (TODAY + 1) * DAY_MS)
        assert {int(row["day_number"]) for row in sums} == {TODAY - 1, TODAY}

        # Summarizing a stored day again (another process) adds nothing.
        await reports.summarize_day(db, PARTNER, TODAY - 1)
        assert await count(db, "SELECT COUNT(*) FROM settlement_days WHERE partner_id = $1", 1) == (
            rows
        )

        # Past the margin TODAY is summarized too, with its late row.
        assert await summarized(db, LATER_MS) == expected
        assert await done_days(db) == [TODAY - 3, TODAY - 2, TODAY - 1, TODAY]

    backend.run(scenario)


def test_a_report_only_reads(backend: Backend) -> None:
    """However many closed days a report covers, it writes nothing: they are summed live until
    the summarizer has stored them, with the same totals."""

    async def scenario(db: SqlDatabase) -> None:
        await world(db)
        tables = ("settlement_days", "settlement_days_done")
        for _ in range(2):
            before = await live(db)
            for table in tables:
                assert await count(db, f"SELECT COUNT(*) FROM {table}") == 0
        # Some days stored, some not (a gap in the middle): still the same answer.
        await reports.summarize_day(db, PARTNER, TODAY - 2)
        counts = [await count(db, f"SELECT COUNT(*) FROM {table}") for table in tables]
        assert await live(db) == before
        assert [await count(db, f"SELECT COUNT(*) FROM {table}") for table in tables] == counts
        assert await summarized(db, LATER_MS) == before

    backend.run(scenario)


def test_summarizing_is_idempotent(backend: Backend) -> None:
    async def scenario(db: SqlDatabase) -> None:
        await world(db)
        summarizer = settlement_days.Summarizer(db)
        assert await summarizer.run_once(LATER_MS) == 4 + 3  # PARTNER from TODAY-3, OTHER TODAY-2
        once = await stored_rows(db)
        assert await summarizer.run_once(LATER_MS) == 0
        # A fresh one (another process, a restart) finds nothing to do either.
        assert await settlement_days.Summarizer(db).run_once(LATER_MS) == 0
        assert await settlement_days.backlog(db, LATER_MS) == []
        assert await stored_rows(db) == once

    backend.run(scenario)


def test_concurrent_summarizers_store_one_set_of_rows(backend: Backend) -> None:
    """Two summarizers on two stores (two server processes) at once, and a burst of the same
    day summed in parallel: one row per group, the same rows as one summarizer alone."""

    async def scenario(db: SqlDatabase) -> None:
        await world(db)
        expected = await live(db)
        other = await backend.open()
        try:
            results = await asyncio.gather(
                settlement_days.Summarizer(db).run_once(LATER_MS),
                settlement_days.Summarizer(other).run_once(LATER_MS),
            )
            assert sum(results) >= 7  # each day at least once; a day twice changes nothing
            await asyncio.gather(
                *(
                    reports.summarize_day(store, PARTNER, TODAY - 1)
                    for store in (db, other)
                    for _ in range(4)
                )
            )
        finally:
            await other.close()
        assert await done_days(db) == [TODAY - 3, TODAY - 2, TODAY - 1, TODAY]
        assert await count(db, "SELECT COUNT(*) FROM settlement_days") == 3 * 5 + 3
        assert await live(db) == expected
        rows = await stored_rows(db)
        async with db.transaction() as tx:
            for table in ("settlement_days", "settlement_days_done"):
                await tx.execute(f"DELETE FROM {table}")
        await settlement_days.Summarizer(db).run_once(LATER_MS)
        assert await stored_rows(db) == rows

    backend.run(scenario)


def test_a_pass_is_capped_and_takes_partners_in_turn(backend: Backend) -> None:
    async def scenario(db: SqlDatabase) -> None:
        await world(db)
        summarizer = settlement_days.Summarizer(db, max_days=3)
        assert await summarizer.run_once(LATER_MS) == 3
        # The oldest day of each partner first, then the next one of the first partner.
        assert await done_days(db) == [TODAY - 3, TODAY - 2]
        assert await done_days(db, OTHER_PARTNER) == [TODAY - 2]
        assert summarizer.cursors == {PARTNER: TODAY - 1, OTHER_PARTNER: TODAY - 1}
        assert await summarizer.run_once(LATER_MS) == 3
        assert await summarizer.run_once(LATER_MS) == 1
        assert await summarizer.run_once(LATER_MS) == 0
        assert summarizer.cursors == {PARTNER: TODAY + 1, OTHER_PARTNER: TODAY + 1}
        assert await done_days(db) == [TODAY - 3, TODAY - 2, TODAY - 1, TODAY]
        # The next day closes: the next pass reads only its marks and sums it.
        await add_row(db, (TODAY + 1) * DAY_MS + 1, amount_minor=5)
        assert await summarizer.run_once(LATER_MS + DAY_MS) == 2
        assert await done_days(db, OTHER_PARTNER) == [TODAY - 2, TODAY - 1, TODAY, TODAY + 1]

    backend.run(scenario)


def test_backlog_since_and_partner(backend: Backend) -> None:
    async def scenario(db: SqlDatabase) -> None:
        await world(db)
        found = await settlement_days.backlog(db, EARLY_MS, since=day(TODAY - 2), partner="mm")
        assert [(b.partner_id, b.name, b.days) for b in found] == [
            (PARTNER, "mm", [TODAY - 2, TODAY - 1])
        ]
        everyone = await settlement_days.backlog(db, EARLY_MS)
        assert [(b.partner_id, b.days) for b in everyone] == [
            (PARTNER, [TODAY - 3, TODAY - 2, TODAY - 1]),
            (OTHER_PARTNER, [TODAY - 2, TODAY - 1]),
        ]
        # A --since before the oldest transaction starts at that transaction's day.
        early = await settlement_days.backlog(db, EARLY_MS, since=day(TODAY - 400))
        assert [b.days for b in early] == [b.days for b in everyone]
        with pytest.raises(OperatorError, match="no partner 'nobody'"):
            await settlement_days.backlog(db, EARLY_MS, partner="nobody")
        assert await count(db, "SELECT COUNT(*) FROM settlement_days_done") == 0

    backend.run(scenario)


def test_undone_days_reads_the_marks_in_bounded_windows(backend: Backend) -> None:
    """Past SCAN_DAYS marks a gap is still found; the limit stops the scan where it is."""

    async def scenario(db: SqlDatabase) -> None:
        await add_partner(db, PARTNER, "mm")
        span = settlement_days.SCAN_DAYS + 50
        async with db.transaction() as tx:
            for number in range(1_000, 1_000 + span):
                if number not in (1_010, 1_000 + span - 5):
                    await tx.execute(reports.MARK_DONE_SQL, PARTNER, number)
        days, seen = await settlement_days.undone_days(db, PARTNER, 1_000, 1_000 + span + 2)
        assert days == [1_010, 1_000 + span - 5, 1_000 + span, 1_000 + span + 1]
        assert seen == 1_000 + span + 2
        days, seen = await settlement_days.undone_days(db, PARTNER, 1_000, 1_000 + span, 1)
        assert (days, seen) == ([1_010], 1_011)

    backend.run(scenario)


def test_the_running_job_tells_each_pass_and_its_failures(backend: Backend) -> None:
    """What ``/metrics`` counts (``qwallet_settlement_*``): every pass, ok or failed, and the
    days it summed. A pass fails for real here: its table is renamed away, then back."""

    async def scenario(db: SqlDatabase) -> None:
        await world(db)
        passes: list[tuple[bool, int]] = []

        async def wait_for(condition: object) -> None:
            for _ in range(400):
                if callable(condition) and condition():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"the job did not get there: {passes}")

        now_ms = [LATER_MS]
        async with settlement_days.running(
            db, lambda: now_ms[0], 0.02, on_pass=lambda ok, days: passes.append((ok, days))
        ):
            await wait_for(lambda: len(passes) >= 2)
            # Two partners: TODAY - 3 .. TODAY for the first, TODAY - 2 .. TODAY for the other.
            assert passes[0] == (True, 7)
            assert passes[1] == (True, 0)
            async with db.transaction() as tx:
                await tx.execute("ALTER TABLE settlement_days_done RENAME TO parked_days_done")
            now_ms[0] += DAY_MS  # a day closes: the next pass must read the marks
            seen = len(passes)
            await wait_for(lambda: len(passes) >= seen + 2)
            assert (False, 0) in passes[seen:]
            async with db.transaction() as tx:
                await tx.execute("ALTER TABLE parked_days_done RENAME TO settlement_days_done")
            seen = len(passes)
            await wait_for(lambda: len(passes) >= seen + 2 and passes[-1] == (True, 0))
            # The day that closed meanwhile, for each partner, once the table is back.
            assert next(entry for entry in passes[seen:] if entry[0]) == (True, 2)
        assert sum(days for ok, days in passes if ok) == 9

    backend.run(scenario)
