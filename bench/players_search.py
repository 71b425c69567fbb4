"""The console's players search before and after migration 0019, at WALLETS wallets.

Creates a ``qwallet_bench_search_*`` database on the PostgreSQL server, migrates it to 0017,
fills ``players`` with ``generate_series`` (nicknames ``player-<md5>``, and one in 50,000
``Rarity <n>``), times the search of before 0019 (``LOWER(nickname) LIKE '%text%'`` walking the
players newest first, the statement as it was) for a rare text and a common one, migrates to
head (timing the index build), times ``queries.search_players`` for the same texts and a second
page, prints the median of repeated calls of each, and drops the database.

Run: ``.venv/bin/python bench/players_search.py 1000000`` (PostgreSQL at
``QWALLET_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``); about 40 s at
a million wallets.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from qwallet.admin import queries
from qwallet.store.migrate import upgrade
from qwallet.store.postgres import PostgresStore

ADMIN_URL = os.environ.get("QWALLET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEXTS = ("rarity", "player-a")  # about 1 in 50,000 wallets; about 1 in 16

# The search before migration 0019 (admin/queries.py at 0017), for the "before" figures.
BEFORE = (
    "SELECT id, nickname, currency, status, available_minor, held_minor, pending_in_minor,"
    " created_at_ms FROM players"
    " WHERE (id = $1 OR LOWER(nickname) LIKE $2 OR LOWER(id) LIKE $2)"
    " ORDER BY created_at_ms DESC, id DESC LIMIT $3"
)
FILL = (
    "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
    " held_minor, pending_in_minor, limit_day, day_withdrawn_minor, created_at_ms)"
    " SELECT md5('id' || i), CASE WHEN i % 50000 = 7 THEN 'Rarity ' || i"
    " ELSE 'player-' || md5(i::text) END, 'XAG', 'en', 'active', 0, 0, 0, 0, 0, 1000 + i"
    " FROM generate_series(1, $1::int) i"
)


async def median_ms(call: Callable[[], Awaitable[Any]], runs: int) -> float:
    await call()  # warm: the first call pays for reading the pages in
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main(wallets: int) -> None:
    name = f"qwallet_bench_search_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(upgrade, url, "0017")
        connection = await asyncpg.connect(url)
        try:
            start = time.perf_counter()
            await connection.execute(FILL, wallets)
            await connection.execute("ANALYZE players")
            print(f"{wallets:,} wallets filled in {time.perf_counter() - start:.1f} s")
            for text in TEXTS:
                ms = await median_ms(lambda t=text: connection.fetch(BEFORE, t, f"%{t}%", 51), 7)
                print(f"before 0019, q={text!r}: median {ms:.2f} ms of 7")
        finally:
            await connection.close()
        start = time.perf_counter()
        await asyncio.to_thread(upgrade, url)
        print(f"migration 0019 (index build): {time.perf_counter() - start:.1f} s")
        store = await PostgresStore.open(url, pool_min=1, pool_max=1)
        try:
            for text in TEXTS:
                ms = await median_ms(lambda t=text: queries.search_players(store, t), 15)
                print(f"after 0019, q={text!r}: median {ms:.2f} ms of 15")
            rows = await queries.search_players(store, TEXTS[1])
            cursor = queries.next_players_cursor(rows, TEXTS[1])
            ms = await median_ms(lambda: queries.search_players(store, TEXTS[1], cursor), 15)
            print(f"after 0019, q={TEXTS[1]!r} page 2: median {ms:.2f} ms of 15")
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
