"""Stored settlement days (migration 0016) give exactly the totals computed from transactions.

On both databases: a report with the server's clock summarizes the closed days once and reads
them back, sums the open day (and the day still inside the safety margin) from transactions, and
equals the live computation day by day, over currencies, both kinds, confirmed and rolled back
rows, a row at the last millisecond of a day and one at the first of the next, a pending row and
an early rollback without amount. A stored day keeps its totals once its transactions are gone
(as after ``qwallet db archive``); summarizing a day again changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid

from qwallet.service import partner_reports as reports
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


async def stored(db: SqlDatabase, now_ms: int) -> list[reports.DayTotals]:
    return await reports.settlement(db, PARTNER, day(TODAY - 4), day(TODAY + 1), now_ms)


async def done_days(db: SqlDatabase) -> list[int]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT day_number FROM settlement_days_done WHERE partner_id = $1 ORDER BY day_number",
            PARTNER,
        )
    return [int(row["day_number"]) for row in rows]


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

        # Five minutes into the next day: TODAY is inside the margin and stays live.
        early = (TODAY + 1) * DAY_MS + 5 * MINUTE_MS
        assert await stored(db, early) == expected
        assert await done_days(db) == [TODAY - 4, TODAY - 3, TODAY - 2, TODAY - 1]
        rows = await count(db, "SELECT COUNT(*) FROM settlement_days")
        assert rows == 2 * 5  # two days of (4 XAG groups + 1 EUR group)

        # A late terminal step of TODAY is still counted: the day was not stored.
        await add_row(db, (TODAY + 1) * DAY_MS - 1, amount_minor=17)
        expected = await live(db)
        assert await stored(db, early) == expected

        # Read back, not recomputed: the stored days keep their totals once their
        # transactions are gone (an archived partition).
        async with db.transaction() as tx:
            await tx.execute(
                "DELETE FROM transactions WHERE updated_at_ms < $1", (TODAY - 1) * DAY_MS
            )
        assert await stored(db, early) == expected
        assert await live(db) != expected

        # Summarizing a stored day again (a concurrent report) adds nothing.
        await reports.summarize_day(db, PARTNER, TODAY - 1)
        assert await count(db, "SELECT COUNT(*) FROM settlement_days") == rows

        # Past the margin TODAY is summarized too, with its late row.
        later = (TODAY + 1) * DAY_MS + reports.SETTLE_AFTER_MS
        assert await stored(db, later) == expected
        assert await done_days(db) == [TODAY - 4, TODAY - 3, TODAY - 2, TODAY - 1, TODAY]

    backend.run(scenario)
