"""What the partner reports cost, that guessing at them spends the Wallet API's budget, and
that report requests waiting for the database are bounded.

The two report queries must reach their rows through the partner indexes of migration 0010
(an index scan, never a scan of the whole table), so that their cost grows with the rows asked
for and not with the history: on PostgreSQL ``EXPLAIN`` over a table of tens of thousands of
transactions of several partners, on SQLite ``EXPLAIN QUERY PLAN``. This module has its own
database (the rows it inserts have no ledger entries) and its own server settings.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from qwallet.api.partner_reports import MAX_REPORTS_IN_FLIGHT
from qwallet.domain.ids import NIL_ID
from qwallet.domain.sessions import MS_PER_DAY
from qwallet.service import archive, partner_reports
from qwallet.settings import Settings
from qwallet.store.sql import fetch_all, fetch_one
from tests.conftest import UNLIMITED_RPS, LiveServer, Platform

ROWS = int(os.environ.get("QWALLET_TEST_REPORT_ROWS", "60000"))
PARTNERS = 6
CHUNK = 50_000
AUTH_FAILURE_BURST = 5


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        trusted_proxies=("127.0.0.1/32",),
        auth_failure_rps=0.01,
        auth_failure_burst=AUTH_FAILURE_BURST,
        rate_limit_player_rps=UNLIMITED_RPS,
        rate_limit_player_burst=int(UNLIMITED_RPS),
        rate_limit_partner_rps=UNLIMITED_RPS,
        rate_limit_partner_burst=int(UNLIMITED_RPS),
    )


def test_failed_authentications_share_the_wallet_api_budget(
    server: LiveServer, platform: Platform
) -> None:
    username, password = platform.create_partner()
    guesser = {"X-Forwarded-For": "203.0.113.77"}
    params = {"fromMs": "0", "toMs": "9"}
    statuses = [
        httpx.get(
            f"{server.url}/partner/transactions",
            params=params,
            auth=(username, f"guess-{attempt}"),
            headers=guesser,
            timeout=30,
        ).status_code
        for attempt in range(AUTH_FAILURE_BURST)
    ]
    assert statuses == [401] * AUTH_FAILURE_BURST
    # The budget is spent: the next guess at the reports and at the Wallet API is 429, unhashed.
    report = httpx.get(
        f"{server.url}/partner/settlement",
        params={"fromDate": "2026-12-01"},
        auth=(username, "guess"),
        headers=guesser,
        timeout=30,
    )
    assert report.status_code == 429 and report.json()["errorCode"] == 104
    assert int(report.headers["retry-after"]) >= 1
    wallet = httpx.post(
        f"{server.url}/wallet/getBalance",
        json={"token": "x"},
        auth=(username, "guess"),
        headers=guesser,
        timeout=30,
    )
    assert wallet.status_code == 429
    # Even right credentials from that address wait (they would have cost a scrypt to tell),
    # while another address is served.
    assert (
        httpx.get(
            f"{server.url}/partner/transactions",
            params=params,
            auth=(username, password),
            headers=guesser,
            timeout=30,
        ).status_code
        == 429
    )
    served = httpx.get(
        f"{server.url}/partner/transactions",
        params=params,
        auth=(username, password),
        headers={"X-Forwarded-For": "198.51.100.5"},
        timeout=30,
    )
    assert served.status_code == 200 and served.json() == {"transactions": [], "nextCursor": None}


def _fill(platform: Platform, backend: str) -> tuple[int, int]:
    """``ROWS`` transactions (``QWALLET_TEST_REPORT_ROWS``, for measuring at other sizes)
    spread over ``PARTNERS`` partners and 300 days (no ledger: the
    plan is what is measured); returns (one partner's id, the first day's start ms)."""
    partner_ids = []
    for _ in range(PARTNERS):
        username, _password = platform.create_partner()
        row = platform.run(
            fetch_one(platform.store, "SELECT id FROM partners WHERE name = $1", username)
        )
        assert row is not None
        partner_ids.append(int(row["id"]))
    player = platform.create_player()
    start_ms = (platform.clock.now_ms() // MS_PER_DAY - 400) * MS_PER_DAY
    step_ms = 300 * MS_PER_DAY // ROWS
    series = (
        "generate_series($4::integer, $1::integer) AS n"
        if backend == "postgres"
        else "(WITH RECURSIVE s(n) AS (SELECT $4 UNION ALL SELECT n + 1 FROM s WHERE n < $1)"
        " SELECT n FROM s)"
    )
    uuid = "md5(n::text)::uuid" if backend == "postgres" else "printf('%032x', n)"
    # Partner of row n: the (n mod PARTNERS)-th id, written as a CASE both dialects read.
    partner_of = (
        "CASE "
        + " ".join(f"WHEN n % {PARTNERS} = {i} THEN {p}" for i, p in enumerate(partner_ids))
        + " END"
    )

    async def insert() -> None:
        if backend == "postgres":
            # The months the rows fall in, as a running server keeps them (migration 0011).
            await archive.ensure_partitions_between(
                platform.store, start_ms, start_ms + 300 * MS_PER_DAY + 5000
            )
        # In transactions of at most CHUNK rows: one statement of them all outlasts the
        # pool's command timeout at the larger sizes.
        for first in range(1, ROWS + 1, CHUNK):
            async with platform.store.transaction() as tx:
                await tx.execute(
                    "INSERT INTO transactions (qw_transaction_id, partner_id, kind,"
                    " mm_transaction_id, player_id, amount_minor, currency, state,"
                    " created_at_ms, updated_at_ms)"
                    f" SELECT {uuid}, {partner_of}, CASE WHEN n % 5 = 0 THEN 'deposit'"
                    " ELSE 'withdrawal' END, 'bulk-' || n, $2, 100 + n % 7, 'XAG',"
                    " CASE WHEN n % 3 = 0 THEN 'rolled_back' ELSE 'confirmed' END,"
                    f" CAST($3 AS BIGINT) + CAST(n AS BIGINT) * {step_ms},"
                    f" CAST($3 AS BIGINT) + CAST(n AS BIGINT) * {step_ms} + 5000"
                    f" FROM {series}",
                    min(ROWS, first + CHUNK - 1),
                    player,
                    start_ms,
                    first,
                )
        async with platform.store.transaction() as tx:
            await tx.execute("ANALYZE transactions" if backend == "postgres" else "ANALYZE")

    platform.run(insert())
    return partner_ids[0], start_ms


def _index_and_partitions(platform: Platform, index: str) -> list[str]:
    """``index`` and, on a partitioned table (migration 0011), the index of each partition
    that PostgreSQL built for it under a name of its own."""
    rows = platform.run(
        fetch_all(
            platform.store,
            "SELECT c.relname FROM pg_partition_tree(to_regclass($1)) t"
            " JOIN pg_class c ON c.oid = t.relid",
            index,
        )
    )
    return sorted({index, *(str(row["relname"]) for row in rows)})


def test_report_queries_use_the_partner_indexes(
    backend: str, platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    partner_id, start_ms = _fill(platform, backend)
    day_ms = start_ms + 100 * MS_PER_DAY
    # The statements the service runs, with the arguments of a week's page and of one day.
    listing_args: tuple[Any, ...] = (partner_id, day_ms, day_ms + 7 * MS_PER_DAY, 101)
    day_args = (partner_id, day_ms, day_ms + MS_PER_DAY)
    cases = [
        ("ix_transactions_partner_created", partner_reports.LISTING_SQL, listing_args),
        (
            "ix_transactions_partner_created",
            partner_reports.LISTING_AFTER_SQL,
            (partner_id, day_ms + MS_PER_DAY, *listing_args[2:], day_ms + MS_PER_DAY, NIL_ID),
        ),
        ("ix_transactions_partner_updated", partner_reports.SETTLEMENT_SQL, day_args),
    ]
    plans = []
    for index, sql, args in cases:
        if backend == "postgres":
            rows = platform.run(fetch_all(platform.store, "EXPLAIN " + sql, *args))
            lines = [str(row["QUERY PLAN"]) for row in rows]
            plan = "\n".join(lines)
            # A month the rows do not reach (the default partition, the months ahead) is empty:
            # reading it whole costs nothing, whatever the history.
            empty = {
                str(row["relname"])
                for row in platform.run(
                    fetch_all(
                        platform.store,
                        "SELECT c.relname FROM pg_partition_tree('transactions') t"
                        " JOIN pg_class c ON c.oid = t.relid"
                        " WHERE t.isleaf AND NOT EXISTS (SELECT 1 FROM transactions x"
                        "  WHERE x.tableoid = c.oid)",
                    )
                )
            }
            scanned = re.findall(r"Seq Scan on (\w+)", plan)
            assert all(table in empty for table in scanned), plan
            # An index scan, or a bitmap index scan when the rows are few: either way the index.
            # The listing may also walk ix_transactions_created (migration 0008) in time order
            # and filter the partner: with a few partners of equal size that is as cheap, and
            # still bounded by the page, not by the history.
            names = [index, "ix_transactions_created"] if "created" in index else [index]
            allowed = "|".join(name for n in names for name in _index_and_partitions(platform, n))
            assert re.search(rf"Index (Only )?Scan (using|on) ({allowed})\b", plan), plan
        else:
            rows = platform.run(fetch_all(platform.store, "EXPLAIN QUERY PLAN " + sql, *args))
            lines = [str(row["detail"]) for row in rows]
            plan = "\n".join(lines)
            scans = [line for line in lines if "transactions" in line]
            assert scans and all(f"INDEX {index}" in line for line in scans), plan
        # The settlement sorts only the one day's rows it read (on partitioned tables, one
        # index range per month: updated_at_ms is not the partition key); the paged listing
        # must not sort at all.
        if "ORDER BY" in sql and "updated" not in index:  # the index gives the order
            # (an incremental sort presorted on the time only orders the rows of one millisecond)
            whole = plan.replace("Incremental Sort", "").replace("Sort Key", "")
            # (a partitioned table qualifies the key: "transactions.created_at_ms")
            if not re.search(r"Presorted Key: (\w+\.)?created_at_ms\b", plan):
                whole = plan
            assert "Sort" not in whole and "TEMP B-TREE" not in plan, plan
        plans.append(plan)

    # The service's own calls, timed: one page and one day out of ROWS stored rows.
    first_day = dt.date(1970, 1, 1) + dt.timedelta(days=day_ms // MS_PER_DAY)

    async def timed() -> tuple[float, float, Any, Any]:
        """Median of 5 of each call, in one event loop (a ``run`` costs more than the query)."""
        pages, days = [], []
        for _ in range(5):
            started = time.perf_counter()
            page = await partner_reports.list_transactions(
                platform.store, partner_id, day_ms, day_ms + 7 * MS_PER_DAY, 100
            )
            pages.append(time.perf_counter() - started)
            started = time.perf_counter()
            totals = await partner_reports.settlement(
                platform.store, partner_id, first_day, first_day
            )
            days.append(time.perf_counter() - started)
        return statistics.median(pages), statistics.median(days), page, totals

    page_s, day_s, (page, position), totals = platform.run(timed())
    assert len(page) == 100 and position is not None
    assert totals and totals[0].day == first_day
    day_rows = sum(
        t.withdrawals_confirmed_count
        + t.withdrawals_rolled_back_count
        + t.deposits_confirmed_count
        + t.deposits_rolled_back_count
        for t in totals
    )
    with capsys.disabled():
        print(
            f"\n[{backend}] {ROWS} rows: a page of 100 in {page_s * 1000:.1f} ms,"
            f" one day's settlement ({day_rows} rows)"
            f" in {day_s * 1000:.1f} ms"
        )
        print("\n--\n".join(plans))


def test_report_requests_in_flight_are_bounded(
    backend: str, server: LiveServer, platform: Platform, settings: Settings
) -> None:
    """With every report query stuck behind a lock, at most MAX_REPORTS_IN_FLIGHT requests wait;
    the next ones are refused at once with 429, and the waiting ones finish once it is gone."""
    username, password = platform.create_partner()
    params = {"fromDate": "2026-12-01"}
    auth = (username, password)
    url = f"{server.url}/partner/settlement"
    assert httpx.get(url, params=params, auth=auth, timeout=30).status_code == 200  # cached now
    release = _hold_transactions_lock(backend, settings.database_url, platform)
    try:
        with ThreadPoolExecutor(max_workers=MAX_REPORTS_IN_FLIGHT) as pool:
            waiting = [
                pool.submit(httpx.get, url, params=params, auth=auth, timeout=60)
                for _ in range(MAX_REPORTS_IN_FLIGHT)
            ]
            time.sleep(2.0)  # every one of them has arrived and waits for the lock
            assert not any(future.done() for future in waiting)
            refused = httpx.get(url, params=params, auth=auth, timeout=30)
            assert refused.status_code == 429, refused.text
            assert refused.json()["errorCode"] == 104 and refused.headers["retry-after"] == "1"
            release()
            release = _nothing
            assert [future.result().status_code for future in waiting] == [200] * len(waiting)
    finally:
        release()
    assert httpx.get(url, params=params, auth=auth, timeout=30).status_code == 200


def _nothing() -> None:
    return None


def _hold_transactions_lock(backend: str, database_url: str, platform: Platform) -> Any:
    """Block every report query from another connection; returns the function that stops it."""
    if backend == "sqlite":
        from qwallet.store.sqlite import sqlite_path

        connection = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")  # the report's own BEGIN IMMEDIATE waits

        def release_sqlite() -> None:
            connection.execute("ROLLBACK")
            connection.close()

        return release_sqlite
    import asyncpg

    pg = platform.run(asyncpg.connect(database_url))
    # Closed days are read from their stored summaries (migration 0016): lock those too.
    platform.run(
        pg.execute(
            "BEGIN; LOCK TABLE transactions, settlement_days, settlement_days_done"
            " IN ACCESS EXCLUSIVE MODE"
        )
    )

    def release_postgres() -> None:
        platform.run(pg.execute("ROLLBACK"))
        platform.run(pg.close())

    return release_postgres
