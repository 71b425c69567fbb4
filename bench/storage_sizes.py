"""Database bytes per stored transaction, per table and per index, on a bulk-preloaded database.

Creates a ``qwallet_bench_*`` database on the PostgreSQL server, migrates it, seeds WALLETS
funded wallets and preloads STORED completed transactions with the benchmark's own loader
(``qwallet.store.bulk_load.preload``: indexes rebuilt after the load, then VACUUM ANALYZE), reads
``pg_table_size`` / ``pg_indexes_size`` of every table and ``pg_relation_size`` of every index,
partitions summed into their parent (``pg_partition_tree``), prints them per stored transaction,
writes them to OUT as JSON, and drops the database.

Run: ``.venv/bin/python bench/storage_sizes.py 500000 20000 sizes.json`` (PostgreSQL at
``QWALLET_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``). To compare two
revisions, run it with ``PYTHONPATH`` pointing at each one's ``src`` (docs/benchmarks.md, "Ids as
uuid").
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import asyncpg

from qwallet.bench import database
from qwallet.store import bulk_load
from qwallet.store.postgres import asyncpg_dsn

ADMIN_URL = os.environ.get("QWALLET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# A partitioned table or index holds nothing itself: its partitions are summed (a plain one has
# no partition tree, so its own size is taken).
TABLES = """
SELECT c.relname AS name,
       COALESCE((SELECT SUM(pg_table_size(p.relid)) FROM pg_partition_tree(c.oid) p),
                pg_table_size(c.oid)) AS heap,
       COALESCE((SELECT SUM(pg_indexes_size(p.relid)) FROM pg_partition_tree(c.oid) p),
                pg_indexes_size(c.oid)) AS indexes
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
 ORDER BY 1
"""
INDEXES = """
SELECT t.relname AS table_name, i.relname AS name,
       COALESCE((SELECT SUM(pg_relation_size(p.relid)) FROM pg_partition_tree(i.oid) p),
                pg_relation_size(i.oid)) AS bytes
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
 WHERE t.relnamespace = current_schema()::regnamespace
 ORDER BY 3 DESC
"""
ID_TYPES = """
SELECT table_name, column_name, data_type FROM information_schema.columns
 WHERE table_schema = current_schema() AND data_type IN ('uuid', 'text')
 ORDER BY 1, 2
"""


async def measure(stored: int, wallets: int) -> dict[str, Any]:
    bench_db = await database.create_postgres(ADMIN_URL)
    try:
        now_ms = int(time.time() * 1000)
        await database.seed(bench_db, wallets, now_ms)
        started = time.monotonic()
        await bulk_load.preload(bench_db, stored, [bench_db.partner_id], now_ms)
        connection = await asyncpg.connect(asyncpg_dsn(bench_db.url), timeout=10)
        try:
            return {
                "stored": int(await connection.fetchval("SELECT COUNT(*) FROM transactions")),
                "wallets": wallets,
                "preload_s": round(time.monotonic() - started, 1),
                "tables": [dict(r) for r in await connection.fetch(TABLES)],
                "indexes": [dict(r) for r in await connection.fetch(INDEXES)],
                "types": [dict(r) for r in await connection.fetch(ID_TYPES)],
            }
        finally:
            await connection.close()
    finally:
        await database.drop_postgres(ADMIN_URL, bench_db)


def show(sizes: dict[str, Any]) -> None:
    stored = sizes["stored"]
    total = sum(int(t["heap"]) + int(t["indexes"]) for t in sizes["tables"])
    wallets = sizes["wallets"]
    print(f"{stored:,} transactions, {wallets:,} wallets: {total / stored:,.1f} bytes each")
    print("table: table bytes, index bytes (per stored transaction)")
    for t in sorted(sizes["tables"], key=lambda t: -(int(t["heap"]) + int(t["indexes"]))):
        heap, indexes = int(t["heap"]), int(t["indexes"])
        if heap + indexes >= 1_000_000:
            each = f"{heap / stored:.1f} · {indexes / stored:.1f}"
            print(f"  {t['name']}: {heap:,}, {indexes:,} ({each})")
    print("index: bytes (per stored transaction)")
    for i in sizes["indexes"]:
        if int(i["bytes"]) >= 1_000_000:
            size = int(i["bytes"])
            print(f"  {i['table_name']}.{i['name']}: {size:,} ({size / stored:.1f})")


def main() -> None:
    stored, wallets, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    sizes = asyncio.run(measure(stored, wallets))
    with open(out, "w", encoding="utf-8") as sink:
        json.dump(sizes, sink, indent=1, default=int)
    show(sizes)


if __name__ == "__main__":
    main()
