"""WAL per withdraw and the pgbench rate on a loaded database: random (version-4) against
time-ordered (version-7) transaction ids, in one run, on one database.

Creates a ``qwallet_bench_*`` database on the PostgreSQL server, migrates it, seeds WALLETS funded
wallets and preloads STORED completed transactions into the current month's partition with the
benchmark's own loader (``qwallet.store.bulk_load.preload``, over the last SPAN_DAYS days; indexes
rebuilt after the load, then VACUUM ANALYZE). Then ROUNDS rounds of each variant in the order
v4, v7, v7, v4, v4, v7, ... (so a drift of the machine over the run weighs on both alike); each
round installs its functions (v4: ``wallet_v1_before_0018.sql``, the functions of revision 0017;
v7: the current ones), runs ``CHECKPOINT`` (every round starts with no page yet logged whole) and
pgbench for SECONDS seconds with CLIENTS clients calling ``wallet_v1_begin`` (a withdrawal of a
random wallet, the clock read per call so that version-7 ids advance as in production).

The WAL of a round is read back with ``pg_walinspect``: the records that touch this database's
relations (the server is shared; other databases' records are left out), their bytes and those of
their full-page images, per withdraw. The cluster-wide LSN advance is printed too. Prints one line
per round and the per-variant sums, writes them to OUT as JSON, and drops the database.

Run: ``.venv/bin/python bench/uuid7_wal.py 3000000 100000 2 30 16 uuid7.json`` (PostgreSQL at
``QWALLET_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``, superuser: it
creates the ``pg_walinspect`` extension in the scratch database).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from qwallet.bench import database
from qwallet.store import bulk_load
from qwallet.store.postgres import asyncpg_dsn, read_sql, split_sql, wallet_function_statements

ADMIN_URL = os.environ.get("QWALLET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SPAN_DAYS = 2  # the preload's history ends in the current month: its partition is the loaded one

# pgbench: a withdrawal of 1 minor unit from a random wallet; tokens as the seed makes them.
SCRIPT = """\\set i random(1, :players)
\\set r random(1, 1000000000000000)
SELECT code FROM wallet_v1_begin(:partner, 'withdrawal', md5('t' || :i)::uuid::text,
  'u7.' || :client_id || '.' || :r, 1, 'XAG', NULL, 100000000000,
  (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
"""

WAL = """
SELECT COUNT(*) AS records, COALESCE(SUM(record_length), 0) AS bytes,
       COALESCE(SUM(fpi_length), 0) AS fpi_bytes, COUNT(*) FILTER (WHERE fpi_length > 0) AS fpis
  FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
 WHERE block_ref LIKE '%/' || $3::text || '/%'
"""


def _statements(variant: str) -> list[str]:
    if variant == "v4":
        return split_sql(read_sql("wallet_v1_before_0018.sql"))
    return wallet_function_statements()


def _pgbench(url: str, seconds: int, clients: int, players: int, partner_id: int) -> dict[str, Any]:
    parts = urlsplit(url)
    with tempfile.TemporaryDirectory(prefix="qwallet-uuid7-") as directory:
        script = Path(directory) / "withdraw.sql"
        script.write_text(SCRIPT, encoding="utf-8")
        argv = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2"]
        argv += ["-T", str(seconds), "-D", f"players={players}", "-D", f"partner={partner_id}"]
        argv += ["-f", str(script), "-h", parts.hostname or "127.0.0.1"]
        argv += ["-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
        argv += [parts.path.lstrip("/")]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    processed = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    assert processed and tps, out.stdout + out.stderr
    return {
        "withdraws": int(processed.group(1)),
        "tps": float(tps.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
    }


async def _round(
    bench_db: database.BenchDatabase, variant: str, seconds: int, clients: int
) -> dict[str, Any]:
    connection = await asyncpg.connect(asyncpg_dsn(bench_db.url), timeout=10)
    try:
        for statement in _statements(variant):
            await connection.execute(statement)
        await connection.execute("CHECKPOINT")
        database_oid = str(
            await connection.fetchval(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            )
        )
        start = await connection.fetchval("SELECT pg_current_wal_lsn()::text")
        load_before = os.getloadavg()[0]
        result = await asyncio.to_thread(
            _pgbench, bench_db.url, seconds, clients, bench_db.players, bench_db.partner_id
        )
        end = await connection.fetchval("SELECT pg_current_wal_lsn()::text")
        cluster = await connection.fetchval(
            "SELECT $2::text::pg_lsn - $1::text::pg_lsn", start, end
        )
        wal = await connection.fetchrow(WAL, start, end, database_oid)
        assert wal is not None
        versions = await connection.fetch(
            "SELECT substr(qw_transaction_id::text, 15, 1) AS version, COUNT(*) AS n"
            " FROM transaction_keys WHERE mm_transaction_id LIKE 'u7.%' GROUP BY 1"
        )
    finally:
        await connection.close()
    withdraws = result["withdraws"]
    return {
        "variant": variant,
        **result,
        "wal_bytes_per_withdraw": int(wal["bytes"]) / withdraws,
        "fpi_bytes_per_withdraw": int(wal["fpi_bytes"]) / withdraws,
        "fpis_per_withdraw": int(wal["fpis"]) / withdraws,
        "cluster_wal_bytes_per_withdraw": float(cluster) / withdraws,
        "load_average": [load_before, os.getloadavg()[0]],
        "ids_by_version": {row["version"]: int(row["n"]) for row in versions},
    }


async def measure(
    stored: int, wallets: int, rounds: int, seconds: int, clients: int
) -> dict[str, Any]:
    bench_db = await database.create_postgres(ADMIN_URL)
    try:
        now_ms = int(time.time() * 1000)
        await database.seed(bench_db, wallets, now_ms)
        started = time.monotonic()
        await bulk_load.preload(
            bench_db, stored, [bench_db.partner_id], now_ms, span_days=SPAN_DAYS
        )
        preload_s = time.monotonic() - started
        connection = await asyncpg.connect(asyncpg_dsn(bench_db.url), timeout=10)
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            partitions = await connection.fetch(
                "SELECT c.relname, c.reltuples::bigint AS rows FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'transactions'::regclass AND c.reltuples > 0"
            )
        finally:
            await connection.close()
        order = ["v4", "v7", "v7", "v4"] * ((rounds + 1) // 2)
        results = []
        for variant in order[: 2 * rounds]:  # ROUNDS of each variant
            result = await _round(bench_db, variant, seconds, clients)
            results.append(result)
            print(json.dumps(result), flush=True)
        return {
            "stored": stored,
            "wallets": wallets,
            "seconds": seconds,
            "clients": clients,
            "preload_s": round(preload_s, 1),
            "partitions": [dict(row) for row in partitions],
            "rounds": results,
        }
    finally:
        await database.drop_postgres(ADMIN_URL, bench_db)


def show(report: dict[str, Any]) -> None:
    print(f"{report['stored']:,} stored ({report['partitions']}), preload {report['preload_s']} s")
    for variant in ("v4", "v7"):
        rounds = [r for r in report["rounds"] if r["variant"] == variant]
        withdraws = sum(r["withdraws"] for r in rounds)
        wal = sum(r["wal_bytes_per_withdraw"] * r["withdraws"] for r in rounds) / withdraws
        fpi = sum(r["fpi_bytes_per_withdraw"] * r["withdraws"] for r in rounds) / withdraws
        tps = [round(r["tps"]) for r in rounds]
        print(f"{variant}: {wal:,.0f} WAL bytes/withdraw ({fpi:,.0f} of page images), tps {tps}")


def main() -> None:
    stored, wallets, rounds, seconds, clients = (int(a) for a in sys.argv[1:6])
    report = asyncio.run(measure(stored, wallets, rounds, seconds, clients))
    with open(sys.argv[6], "w", encoding="utf-8") as sink:
        json.dump(report, sink, indent=1, default=str)
    show(report)


if __name__ == "__main__":
    main()
