"""The reconcile's hold checks read the pending transactions of the checked wallets only, not
the whole pending backlog, however large the backlog (PostgreSQL, a grown database).

A hash join over every pending row once per batch of wallets made a run's cost grow with
backlog x batches (docs/benchmarks.md, "Why the hold check grows"). Here a backlog of
``BACKLOG`` holds spread over every wallet, and one batch of ``BATCH`` wallets: what the plan
reads from ``transactions`` must be about those wallets' own pending rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from qwallet.service import reconcile
from tests.conftest import fresh_database_url
from tests.growth.generate import BASE_MS, grow

TRANSACTIONS = 60_000
PLAYERS = 5_000  # generate.py's
BACKLOG = 30_000
BATCH = 500


@pytest.fixture(scope="module")
def backlogged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for url in fresh_database_url("postgres", tmp_path_factory.mktemp("backlog")):
        asyncio.run(grow(url, TRANSACTIONS))
        asyncio.run(_add_backlog(url))
        yield url


async def _add_backlog(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(
            "INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id,"
            " player_id, amount_minor, currency, state, begin_balance_minor,"
            " final_balance_minor, created_at_ms, updated_at_ms)"
            " SELECT md5('backlog' || i)::uuid, 1, 'withdrawal', 'backlog-' || i,"
            f" 'p' || lpad((1 + i % {PLAYERS})::text, 7, '0'), 10, 'XAG', 'pending', 1, 1,"
            f" {BASE_MS} + {TRANSACTIONS} * 20 + i, {BASE_MS} + {TRANSACTIONS} * 20 + i"
            f" FROM generate_series(1, {BACKLOG}) i"
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's scans of ``transactions`` partitions returned, over all their loops."""
    stack, total = [plan], 0
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", []))
        if str(node.get("Relation Name", "")).startswith("transactions"):
            total += int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 0))
    return total


async def _explain(url: str, sql: str, *args: object) -> dict[str, Any]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        async with connection.transaction():
            await connection.execute(reconcile.NO_JIT)
            document = await connection.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    finally:
        await connection.close()
    return dict((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])


async def _pending(url: str, where: str, *args: object) -> int:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        sql = f"SELECT COUNT(*) FROM transactions WHERE state = 'pending' AND {where}"
        return int(await connection.fetchval(sql, *args))
    finally:
        await connection.close()


def test_the_incremental_hold_check_reads_only_its_wallets_pending_rows(backlogged: str) -> None:
    wallets = [f"p{i:07d}" for i in range(1, PLAYERS + 1, PLAYERS // BATCH)][:BATCH]
    marks = ", ".join(f"${i}" for i in range(1, len(wallets) + 1))
    sql = reconcile._WALLET_HOLDS.format(marks=marks)
    plan = asyncio.run(_explain(backlogged, sql, *wallets))
    own = asyncio.run(_pending(backlogged, "player_id = ANY($1)", wallets))
    read = _rows_read(plan)
    # About the wallets' own pending rows (a tenth of the backlog), never the backlog.
    assert 0 < own <= BACKLOG // 5 and read <= 2 * own, (read, own, json.dumps(plan)[:3000])


def test_the_full_runs_hold_check_reads_only_its_wallets_pending_rows(backlogged: str) -> None:
    first, last = "p0000001", f"p{BATCH:07d}"
    plan = asyncio.run(_explain(backlogged, reconcile._BATCH_HOLDS, first, last))
    own = asyncio.run(_pending(backlogged, "player_id >= $1 AND player_id <= $2", first, last))
    read = _rows_read(plan)
    assert 0 < own <= BACKLOG // 5 and read <= 2 * own, (read, own, json.dumps(plan)[:3000])
