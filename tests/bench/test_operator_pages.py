"""Every console page and operator API call the growth bench times answers as it should, on
both backends, with the samples a phase would take (a transaction, its player and its day, an
order, the partner with the traffic, a sandbox partner, the signed-in operator), and every
query row behind them runs.

The growth run (``tests/bench/test_bench_growth.py``) does the same on a preloaded PostgreSQL
database through ``qwallet bench``; this one checks the rows themselves, cheaply, on SQLite too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from qwallet.bench import operator_queries
from qwallet.bench.growth_report import METHOD
from qwallet.service import api_keys, operators, partners
from tests.conftest import LiveServer, Platform, Wallet


def _samples(platform: Platform, wallet: Wallet, sandbox: str, operator: str) -> Any:
    async def middle() -> dict[str, Any]:
        async with platform.store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT t.qw_transaction_id, t.mm_transaction_id, p.nickname"
                " FROM transactions t JOIN players p ON p.id = t.player_id"
                " WHERE t.player_id = $1 ORDER BY t.created_at_ms LIMIT 1",
                wallet.player_id,
            )
        assert row is not None
        return dict(row)

    row = platform.run(middle())
    return operator_queries.Samples(
        mm_id=str(row["mm_transaction_id"]),
        qw_id=str(row["qw_transaction_id"]),
        player=wallet.player_id,
        nickname=str(row["nickname"]),
        day=dt.datetime.fromtimestamp(platform.clock.now_ms() / 1000, dt.UTC).date(),
        busiest_partner=wallet.username,
        sandbox_partner=sandbox,
        operator=operator,
    )


def test_every_timed_page_and_api_call_answers(
    server: LiveServer, platform: Platform, new_wallet: Any
) -> None:
    wallet = new_wallet(balance="100.00")
    for index in range(3):
        assert wallet.money("withdraw", f"w-{index}", "1.00")[0] == 200
        assert wallet.money("confirmWithdrawal", f"w-{index}", "1.00")[0] == 200
    assert wallet.money("withdraw", "r-1", "2.00")[0] == 200
    assert wallet.money("rollbackWithdrawal", "r-1", rollbackReason="x")[0] == 200
    now = platform.clock.now_ms()
    sandbox = "bench-sandbox-pages"
    platform.run(partners.create_partner(platform.store, sandbox, now, sandbox=True))
    issued = platform.run(operators.create_operator(platform.store, "pages-op", now))
    key = platform.run(api_keys.create_api_key(platform.store, "pages-op", now))
    samples = _samples(platform, wallet, sandbox, issued.username)

    fetches = operator_queries.pages(samples) + operator_queries.operator_api(samples)
    assert [f.name for f in fetches] == operator_queries.fetch_names()
    timings = operator_queries.time_pages(
        server.url, operator_queries.Credentials(issued.username, issued.password, key), fetches, 2
    )
    by_name = {t.name: t for t in timings}
    assert list(by_name) == operator_queries.fetch_names()
    # No order is stored here (as in the bench's empty phase): that row says so and is not run.
    assert by_name["page: order"].skipped == "no order stored"
    assert by_name["page: order"].runs_ms == []
    for fetch in fetches:
        if fetch.missing:
            continue
        timing = by_name[fetch.name]
        assert timing.error is None, (fetch.name, fetch.path, timing.error)
        assert timing.status == fetch.status and len(timing.runs_ms) == 2, fetch.name
        assert timing.median_ms is not None and timing.p99_ms == max(timing.runs_ms)
    # The fault-rule rows add and remove in pairs: no rule is left behind.
    listed = operator_queries.time_pages(
        server.url,
        operator_queries.Credentials(issued.username, issued.password, key),
        [f for f in fetches if f.name == "api: GET faults (sandbox partner)"],
        1,
    )
    assert listed[0].error is None

    async def live_rules() -> int:
        async with platform.store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT COUNT(*) AS n FROM sandbox_fault_rules r JOIN partners p"
                " ON p.id = r.partner_id WHERE p.name = $1 AND r.removed_at_ms IS NULL",
                sandbox,
            )
        return int(row["n"]) if row else -1

    assert platform.run(live_rules()) == 0

    # The query rows behind the pages run too, and each runs at least one statement.
    async def queries() -> list[operator_queries.Timing]:
        named = operator_queries.calls(platform.settings, samples)
        return await operator_queries.time_calls(platform.store, named, 1, explain=False)

    ran = platform.run(queries())
    assert [t.name for t in ran] == operator_queries.call_names()
    assert [(t.name, t.error) for t in ran if t.error] == []


def test_a_failed_sign_in_fails_the_page_rows_and_not_the_api_rows(
    server: LiveServer, platform: Platform
) -> None:
    now = platform.clock.now_ms()
    key = platform.run(api_keys.create_api_key(platform.store, "pages-api-only", now))
    fetches = [
        operator_queries.Fetch("page: dashboard", "/admin/"),
        operator_queries.Fetch("api: GET faults (nobody)", "/api/partners/nobody/faults", api=True),
    ]
    timings = operator_queries.time_pages(
        server.url, operator_queries.Credentials("nobody", "wrong", key), fetches, 1
    )
    assert timings[0].error is not None and timings[0].error.startswith("sign-in answered")
    # The API row ran with its key: an unknown partner is the documented 400, not a 401.
    assert timings[1].status == 400 and timings[1].error == "HTTP 400"


def test_the_method_section_in_the_docs_is_the_one_a_full_run_writes() -> None:
    # A full ``qwallet bench`` rewrites docs/benchmarks.md with ``growth_report.METHOD`` in its
    # Method section: the hand-kept copy there must not drift from it.
    docs = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    method = docs.read_text(encoding="utf-8").split("## Method\n", 1)[1].split("\n## ", 1)[0]
    assert "\n".join(METHOD) in method
