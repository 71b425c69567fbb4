"""Closed settlement days are stored by ``serve``'s periodic job and by ``qwallet db settle``.

On both databases. The job runs in the real application under uvicorn on loopback, with a short
interval and the manual clock: money moves through the Wallet API, ``GET /partner/settlement``
answers the same before and after the day is stored and writes nothing itself, and the job
stores the day only once it is closed. The command runs as a real subprocess: a backfill, a
second run with nothing left, and bad input (a bad date, an unknown partner) refused with exit
code 2 and nothing stored.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import replace
from typing import Any

import httpx

from qwallet.clock import ManualClock
from qwallet.domain.sessions import MS_PER_DAY
from qwallet.service import partner_reports
from qwallet.settings import Settings
from qwallet.store.sql import fetch_one
from tests.conftest import LiveServer, Platform, Wallet
from tests.integration.test_cli_and_operator_api import as_json, qwallet

EPOCH = dt.date(1970, 1, 1)


def count(platform: Platform, sql: str, *args: object) -> int:
    row = platform.run(fetch_one(platform.store, sql, *args))
    assert row is not None
    return int(next(iter(row.values())))


def stored_counts(platform: Platform, partner_id: int) -> tuple[int, int]:
    return (
        count(platform, "SELECT COUNT(*) FROM settlement_days WHERE partner_id = $1", partner_id),
        count(
            platform,
            "SELECT COUNT(*) FROM settlement_days_done WHERE partner_id = $1",
            partner_id,
        ),
    )


def partner_id_of(platform: Platform, name: str) -> int:
    return platform.run(partner_reports.partner_ids(platform.store, name))[0][1]


def wait_until_done(platform: Platform, partner_id: int, day_number: int) -> None:
    deadline = time.monotonic() + 20
    sql = "SELECT COUNT(*) FROM settlement_days_done WHERE partner_id = $1 AND day_number = $2"
    while count(platform, sql, partner_id, day_number) == 0:
        assert time.monotonic() < deadline, "the settlement job did not store the day"
        time.sleep(0.05)


def test_the_job_in_serve_stores_closed_days_and_reports_do_not_write(
    settings: Settings, clock: ManualClock, platform: Platform
) -> None:
    live = LiveServer(replace(settings, settlement_interval_s=0.05), clock)
    live.start()
    try:
        username, password = platform.create_partner()
        player_id = platform.create_player("100.00")
        wallet = Wallet(
            live, username, password, player_id, platform.create_session(player_id, username)
        )
        answers = [
            wallet.money("withdraw", "w-1", "10.00"),
            wallet.money("confirmWithdrawal", "w-1", "10.00"),
            wallet.money("withdraw", "w-2", "2.50"),
            wallet.money("rollbackWithdrawal", "w-2", rollbackReason="cancelled"),
            wallet.money("deposit", "d-1", "4.00"),
            wallet.money("confirmDeposit", "d-1", "4.00"),
        ]
        assert all(status == 200 for status, _ in answers), answers
        wallet.close()
        partner_id = partner_id_of(platform, username)
        day_number = clock.now_ms() // MS_PER_DAY
        params = {"fromDate": (EPOCH + dt.timedelta(days=day_number)).isoformat()}
        with httpx.Client(base_url=live.url, auth=(username, password), timeout=30) as client:

            def report() -> Any:
                response = client.get("/partner/settlement", params=params)
                assert response.status_code == 200, response.text
                return response.json()

            today = report()
            assert len(today["days"]) == 1, today
            # The day is open: passes come and go, nothing is stored, the report wrote nothing.
            time.sleep(0.3)
            assert stored_counts(platform, partner_id) == (0, 0)

            # Five minutes past midnight the day is still inside the margin.
            clock.advance((day_number + 1) * MS_PER_DAY + 5 * 60_000 - clock.now_ms())
            time.sleep(0.3)
            assert stored_counts(platform, partner_id) == (0, 0)
            assert report() == today

            clock.advance(partner_reports.SETTLE_AFTER_MS)
            wait_until_done(platform, partner_id, day_number)
            stored = stored_counts(platform, partner_id)
            assert stored == (3, 1)  # withdrawal confirmed and rolled back, deposit confirmed
            assert report() == today
            assert stored_counts(platform, partner_id) == stored
    finally:
        live.stop()


def add_finished(platform: Platform, partner_id: int, player_id: str, at_ms: int) -> None:
    """A confirmed withdrawal finished at ``at_ms`` (a past day, as after an upgrade)."""

    async def insert() -> None:
        async with platform.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id,"
                " player_id, amount_minor, currency, state, created_at_ms, updated_at_ms)"
                " VALUES ($1, $2, 'withdrawal', $3, $4, 100, 'XAG', 'confirmed', $5, $6)",
                str(uuid.uuid4()),
                partner_id,
                f"mm-{uuid.uuid4().hex}",
                player_id,
                at_ms - 1,
                at_ms,
            )

    platform.run(insert())


def test_db_settle_backfills_and_refuses_bad_input(database_url: str, platform: Platform) -> None:
    username, _ = platform.create_partner()
    partner_id = partner_id_of(platform, username)
    player_id = platform.create_player("0.00")
    # The first day not closed yet: in the margin after midnight UTC that is yesterday, and the
    # days before it are the ones `db settle` may store.
    today = partner_reports.closed_before(time.time_ns() // 1_000_000)
    for back in (5, 3, 3, 1):
        add_finished(platform, partner_id, player_id, (today - back) * MS_PER_DAY + 1_000)
    expected = platform.run(
        partner_reports.settlement(
            platform.store,
            partner_id,
            EPOCH + dt.timedelta(days=today - 6),
            EPOCH + dt.timedelta(days=today),
        )
    )

    for args, message in (
        (["--since", "2026-13-01"], "invalid date '2026-13-01'"),
        (["--since", "20261201"], "expected YYYY-MM-DD"),
        (["--partner", "nobody-at-all"], "no partner 'nobody-at-all'"),
    ):
        refused = qwallet(database_url, "db", "settle", *args, check=False)
        assert refused.returncode == 2, refused
        assert message in " ".join(refused.stderr.split()), refused.stderr
        assert refused.stdout == ""
        assert stored_counts(platform, partner_id) == (0, 0)

    # --since skips the older days; the next run without it does the rest.
    since = (EPOCH + dt.timedelta(days=today - 3)).isoformat()
    first = as_json(
        qwallet(database_url, "db", "settle", "--since", since, "--partner", username, "--json")
    )
    assert first == {"days": 3, "partners": 1}  # today - 3 .. today - 1
    rest = as_json(qwallet(database_url, "db", "settle", "--partner", username, "--json"))
    assert rest == {"days": 2, "partners": 1}  # today - 5, today - 4 (empty)
    assert stored_counts(platform, partner_id) == (3, 5)
    again = qwallet(database_url, "db", "settle", "--partner", username)
    assert again.stdout.strip() == "every closed day is summarized already"
    assert stored_counts(platform, partner_id) == (3, 5)
    assert (
        platform.run(
            partner_reports.settlement(
                platform.store,
                partner_id,
                EPOCH + dt.timedelta(days=today - 6),
                EPOCH + dt.timedelta(days=today),
            )
        )
        == expected
    )
