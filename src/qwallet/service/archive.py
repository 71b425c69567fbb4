"""Archiving closed months of ``transactions`` and ``ledger_entries`` (``qwallet db archive``).

A month is archived whole, oldest first, only when every month before the cut-off is settled:

1. **No pending hold.** A transaction still pending in or before an archived month refuses the
   whole run: its funds are held and its confirm or rollback must still find it.
2. **A verified checkpoint.** The run first reconciles (``reconcile.run_reconcile``, the
   incremental run, audited) and refuses unless it is clean and every entry it archives is at or
   below the checkpoint's position: ``checkpoint_balances`` then carries the archived entries'
   sums, so the next incremental reconcile is clean without them.
3. **Export, then verify.** The month's rows go to ``<table>-YYYY-MM.jsonl.gz`` (one JSON object
   per row, column names as keys, in primary-key order: any tool reads it back), and a manifest
   ``archive-YYYY-MM.json`` records each file's SHA-256 and row count and the checkpoint. The
   files are read back and checked against the manifest and against the database before
   anything is removed.
4. **Keys keep the answers.** In the transaction that removes the rows, each transaction's
   ``transaction_keys`` row receives its final answer (state, player, amount, currency,
   balances), so a replay or a changed-data call still answers as the contract says (spec 1.4).
5. **Remove, carry forward.** PostgreSQL detaches and drops the month's partitions (a brief
   lock of the parent tables, bounded by ``LOCK_TIMEOUT_MS`` and retried); SQLite deletes the
   month's rows. One entry per account then carries what the month's entries summed to
   (``store.ledger.carry_forward``, step ``archive:YYYY-MM`` / ``carry``), so balances still
   equal the sums of the entries and ``qwallet reconcile --full`` stays clean.

Before a month leaves, the settlement of every closed day its transactions finished on is
stored (``partner_reports.summarize_day``): settlement is by the day of the terminal step, which
can fall in a later month than the row's partition, and a stored day no longer needs the rows.
A day not closed yet when the archive runs (a transaction of the month finished today) cannot
be stored; its live settlement then lacks the archived rows (docs/operator-guide.md).

``ensure_partitions`` creates the monthly partitions ahead (PostgreSQL; nothing on SQLite).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qwallet.domain.ids import NIL_ID
from qwallet.domain.sessions import MS_PER_DAY
from qwallet.service import audit, partner_reports, reconcile
from qwallet.service.partners import OperatorError
from qwallet.store import ledger as money
from qwallet.store.sql import Row, SqlDatabase

log = logging.getLogger("qwallet.service.archive")

MONTHS_AHEAD = 3
KEEPER_INTERVAL_S = 3600.0
EXPORT_BATCH = 10_000
LOCK_TIMEOUT_MS = 2_000
LOCK_ATTEMPTS = 10
PARTITION_SCHEMA = "qwallet_partitions"
FORMAT = "qwallet-archive/1"

_TRANSACTION_COLUMNS = (
    "qw_transaction_id",
    "partner_id",
    "kind",
    "mm_transaction_id",
    "player_id",
    "amount_minor",
    "currency",
    "state",
    "description",
    "rollback_reason",
    "begin_balance_minor",
    "final_balance_minor",
    "created_at_ms",
    "updated_at_ms",
)
_ENTRY_COLUMNS = (
    "id",
    "transaction_id",
    "adjustment_id",
    "phase",
    "account",
    "player_id",
    "partner_id",
    "currency",
    "amount_minor",
    "created_at_ms",
)

# The final answer of every transaction of the month goes to its key row; a row without a key
# (written in bulk outside the platform's calls) gets one.
_KEEP_ANSWERS = """
INSERT INTO transaction_keys (partner_id, mm_transaction_id, kind, qw_transaction_id,
    created_at_ms, state, player_id, amount_minor, currency, begin_balance_minor,
    final_balance_minor)
SELECT partner_id, mm_transaction_id, kind, qw_transaction_id, created_at_ms, state, player_id,
       amount_minor, currency, begin_balance_minor, final_balance_minor
  FROM transactions WHERE created_at_ms >= $1 AND created_at_ms < $2
ON CONFLICT (partner_id, mm_transaction_id, kind) DO UPDATE SET
    state = excluded.state, player_id = excluded.player_id,
    amount_minor = excluded.amount_minor, currency = excluded.currency,
    begin_balance_minor = excluded.begin_balance_minor,
    final_balance_minor = excluded.final_balance_minor
"""


@dataclass(frozen=True, slots=True)
class Month:
    """A UTC calendar month as [lower_ms, upper_ms)."""

    year: int
    month: int

    @classmethod
    def of(cls, at_ms: int) -> Month:
        moment = datetime.fromtimestamp(at_ms / 1000, UTC)
        return cls(moment.year, moment.month)

    @property
    def lower_ms(self) -> int:
        return int(datetime(self.year, self.month, 1, tzinfo=UTC).timestamp() * 1000)

    @property
    def upper_ms(self) -> int:
        return self.next().lower_ms

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def suffix(self) -> str:
        return f"y{self.year:04d}m{self.month:02d}"


@dataclass(slots=True)
class ArchivedMonth:
    month: str
    manifest: str
    transactions: int
    ledger_entries: int
    keys: int


@dataclass(slots=True)
class ArchiveReport:
    before: str
    checkpoint_position: int
    months: list[ArchivedMonth] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "checkpointPosition": self.checkpoint_position,
            "months": [
                {
                    "month": m.month,
                    "manifest": m.manifest,
                    "transactions": m.transactions,
                    "ledgerEntries": m.ledger_entries,
                    "keys": m.keys,
                }
                for m in self.months
            ],
        }


def parse_before(text: str) -> Month:
    """``--before YYYY-MM-DD`` or ``YYYY-MM``: the first month *not* archived (the month of the
    date; only whole months before it are)."""
    for pattern in ("%Y-%m-%d", "%Y-%m"):
        try:
            moment = datetime.strptime(text, pattern)
        except ValueError:
            continue
        return Month(moment.year, moment.month)
    raise OperatorError(f"invalid date {text!r}: expected YYYY-MM-DD or YYYY-MM")


async def ensure_partitions(db: SqlDatabase, now_ms: int, months_ahead: int = MONTHS_AHEAD) -> int:
    """Create the monthly partitions from this month to ``months_ahead`` months on (PostgreSQL;
    SQLite keeps one table). Returns how many partitions were created."""
    if db.dialect != "postgresql":
        return 0
    if not 0 <= months_ahead <= 120:
        raise OperatorError("months ahead must be between 0 and 120")
    last = Month.of(now_ms)
    for _ in range(months_ahead):
        last = last.next()
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT qwallet_ensure_partitions($1, $2) AS n", now_ms, last.lower_ms
        )
    return int(row["n"]) if row is not None else 0


async def _keep_partitions(db: SqlDatabase, now_ms: Callable[[], int], interval_s: float) -> None:
    while True:
        try:
            created = await ensure_partitions(db, now_ms())
            if created:
                log.info("created %d monthly partition(s)", created)
        except Exception:
            # Never fatal: without its month a row lands in the default partition, and the
            # next pass (or ``qwallet db partitions``) moves it out.
            log.exception("creating the monthly partitions failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def partition_keeper(
    db: SqlDatabase, now_ms: Callable[[], int], interval_s: float = KEEPER_INTERVAL_S
) -> AsyncIterator[None]:
    """``qwallet serve``'s background work: the months ahead at startup and every hour
    (PostgreSQL only; several servers doing it at once is harmless, creation is idempotent)."""
    if db.dialect != "postgresql":
        yield
        return
    task = asyncio.create_task(_keep_partitions(db, now_ms, interval_s))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def archive(
    db: SqlDatabase, out: Path, before: Month, *, operator: str, now_ms: int
) -> ArchiveReport:
    """Archive every month before ``before`` that holds rows (see the module doc)."""
    if before.lower_ms > Month.of(now_ms).lower_ms:
        raise OperatorError(
            f"{before.label} is after the current month: only closed months are archived"
        )
    cutoff = before.lower_ms
    async with db.transaction() as tx:
        pending = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM transactions WHERE state = 'pending' AND created_at_ms < $1",
            cutoff,
        )
    if pending is not None and int(pending["n"]) > 0:
        raise OperatorError(
            f"{int(pending['n'])} pending transaction(s) created before {before.label}:"
            " a pending hold is never archived (confirm, roll back or resolve them first)"
        )
    checked = await reconcile.run_reconcile(db, operator=operator, now_ms=now_ms)
    if not checked.ok:
        raise OperatorError("reconciliation found differences: nothing archived")
    position = checked.position
    checkpoint = await _checkpoint(db, position)
    report = ArchiveReport(before.label, position)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    for month in await _months_before(db, cutoff):
        if await _holds_rows(db, month):
            await _settle_days(db, month, now_ms)
            report.months.append(await _archive_month(db, out, month, checkpoint, cutoff))
    async with db.transaction() as tx:
        await audit.record(tx, operator, "db.archive", before.label, report.as_json(), now_ms)
    return report


async def _checkpoint(db: SqlDatabase, position: int) -> dict[str, Any]:
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT id, position, at_ms, full_run, entries FROM reconcile_checkpoints"
            " WHERE position >= $1 ORDER BY position DESC, id DESC LIMIT 1",
            position,
        )
    if row is None:
        raise OperatorError("no reconciliation checkpoint covers the archived entries")
    return {key: int(value) for key, value in row.items()}


async def _months_before(db: SqlDatabase, cutoff: int) -> list[Month]:
    async with db.transaction() as tx:
        first = await tx.fetchrow(
            "SELECT MIN(m) AS m FROM ("
            " SELECT MIN(created_at_ms) AS m FROM transactions WHERE created_at_ms < $1"
            " UNION ALL SELECT MIN(created_at_ms) FROM ledger_entries WHERE created_at_ms < $1"
            ") t",
            cutoff,
        )
    if first is None or first["m"] is None:
        return []
    if db.dialect == "postgresql":
        # Rows that landed in the default partition get their month first.
        await ensure_partitions_between(db, int(first["m"]), cutoff - 1)
    months: list[Month] = []
    month = Month.of(int(first["m"]))
    while month.lower_ms < cutoff:
        months.append(month)
        month = month.next()
    return months


async def ensure_partitions_between(db: SqlDatabase, from_ms: int, to_ms: int) -> int:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT qwallet_ensure_partitions($1, $2) AS n", from_ms, to_ms)
    return int(row["n"]) if row is not None else 0


async def _holds_rows(db: SqlDatabase, month: Month) -> bool:
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT EXISTS (SELECT 1 FROM transactions"
            "  WHERE created_at_ms >= $1 AND created_at_ms < $2)"
            " OR EXISTS (SELECT 1 FROM ledger_entries"
            "  WHERE created_at_ms >= $1 AND created_at_ms < $2) AS found",
            month.lower_ms,
            month.upper_ms,
        )
    return row is not None and bool(row["found"])


def _row_json(row: Row, columns: tuple[str, ...]) -> bytes:
    return (json.dumps({c: row[c] for c in columns}, separators=(",", ":")) + "\n").encode()


async def _export(
    db: SqlDatabase, path: Path, table: str, key: str, columns: tuple[str, ...], month: Month
) -> tuple[str, int]:
    """Write the month's rows of ``table`` to ``path`` (gzip JSON lines, ``key`` order); the
    file's SHA-256 and row count. Read in keyset batches, each its own short transaction: the
    rows of a settled month no longer change."""
    select = (
        f"SELECT {', '.join(columns)} FROM {table}"
        f" WHERE created_at_ms >= $1 AND created_at_ms < $2 AND {key} > $3"
        f" ORDER BY {key} LIMIT {EXPORT_BATCH}"
    )
    # The first key below every id: a uuid column (migration 0014) refuses the empty string.
    after: object = NIL_ID if key == "qw_transaction_id" else 0
    rows = 0
    partial = path.with_suffix(path.suffix + ".partial")
    with gzip.open(partial, "wb", compresslevel=6) as sink:
        while True:
            async with db.transaction() as tx:
                batch = await tx.fetch(select, month.lower_ms, month.upper_ms, after)
            if not batch:
                break
            for row in batch:
                sink.write(_row_json(row, columns))
            rows += len(batch)
            after = batch[-1][key]
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    partial.replace(path)
    return _sha256(path), rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str, rows: int) -> None:
    """The file has the recorded checksum and holds ``rows`` whole JSON objects."""
    if _sha256(path) != sha256:
        raise OperatorError(f"{path.name}: checksum differs from the manifest")
    counted = 0
    with gzip.open(path, "rb") as source:
        for line in source:
            if not isinstance(json.loads(line), dict):
                raise OperatorError(f"{path.name}: line {counted + 1} is not a JSON object")
            counted += 1
    if counted != rows:
        raise OperatorError(f"{path.name}: {counted} rows, the manifest says {rows}")


def verify_manifest(manifest_path: Path) -> dict[str, Any]:
    """Check every file a manifest names (``qwallet db archive --verify``); the manifest."""
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise OperatorError(f"{manifest_path.name}: not a {FORMAT} manifest")
    for entry in manifest["files"]:
        verify_file(manifest_path.parent / entry["name"], entry["sha256"], entry["rows"])
    return manifest


async def _settle_days(db: SqlDatabase, month: Month, now_ms: int) -> None:
    """Store the settlement of each closed day a transaction of ``month`` finished on, for each
    partner, unless it is stored already (one indexed range per day and partner)."""
    async with db.transaction() as tx:
        spans = await tx.fetch(
            "SELECT partner_id, MIN(updated_at_ms) AS first_ms, MAX(updated_at_ms) AS last_ms"
            " FROM transactions WHERE created_at_ms >= $1 AND created_at_ms < $2"
            " AND state <> 'pending' GROUP BY partner_id",
            month.lower_ms,
            month.upper_ms,
        )
    closed = partner_reports.closed_before(now_ms)
    for span in spans:
        partner_id = int(span["partner_id"])
        first = int(span["first_ms"]) // MS_PER_DAY
        end = min(int(span["last_ms"]) // MS_PER_DAY + 1, closed)
        if first >= end:
            continue
        async with db.transaction() as tx:
            done = {
                int(row["day_number"])
                for row in await tx.fetch(partner_reports.DONE_SQL, partner_id, first, end)
            }
        for day_number in range(first, end):
            if day_number not in done:
                await partner_reports.summarize_day(db, partner_id, day_number)


async def _archive_month(
    db: SqlDatabase, out: Path, month: Month, checkpoint: dict[str, Any], carry_at_ms: int
) -> ArchivedMonth:
    manifest_path = out / f"archive-{month.label}.json"
    if manifest_path.exists():
        # An archive is never overwritten: the same month again means rows appeared in a month
        # already archived (a clock far off), which an operator must look at.
        raise OperatorError(f"{manifest_path} exists: {month.label} was archived there before")
    files: list[dict[str, str | int]] = []
    for table, key, columns in (
        ("transactions", "qw_transaction_id", _TRANSACTION_COLUMNS),
        ("ledger_entries", "id", _ENTRY_COLUMNS),
    ):
        path = out / f"{table}-{month.label}.jsonl.gz"
        sha256, rows = await _export(db, path, table, key, columns, month)
        verify_file(path, sha256, rows)
        files.append({"table": table, "name": path.name, "sha256": sha256, "rows": rows})
    manifest = {
        "format": FORMAT,
        "month": month.label,
        "fromMs": month.lower_ms,
        "toMs": month.upper_ms,
        "checkpoint": checkpoint,
        "files": files,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    verify_manifest(manifest_path)
    counts = {str(entry["table"]): int(str(entry["rows"])) for entry in files}
    keys = await _remove(db, month, counts, int(checkpoint["position"]), carry_at_ms)
    return ArchivedMonth(
        month.label, manifest_path.name, counts["transactions"], counts["ledger_entries"], keys
    )


async def _remove(
    db: SqlDatabase, month: Month, counts: dict[str, int], position: int, carry_at_ms: int
) -> int:
    """Keep the answers in the keys and remove the month's rows, in one transaction, after
    checking that the database still holds exactly what was exported."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            return await _remove_once(db, month, counts, position, carry_at_ms)
        except Exception as error:  # asyncpg's LockNotAvailableError; the store hides the type
            if "lock" not in str(error).lower() or attempt == LOCK_ATTEMPTS:
                raise
            await asyncio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


async def _remove_once(
    db: SqlDatabase, month: Month, counts: dict[str, int], position: int, carry_at_ms: int
) -> int:
    bounds = (month.lower_ms, month.upper_ms)
    postgres = db.dialect == "postgresql"
    async with db.transaction() as tx:
        if postgres:
            await tx.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
            await tx.execute(
                f"LOCK TABLE {PARTITION_SCHEMA}.transactions_{month.suffix},"
                f" {PARTITION_SCHEMA}.ledger_entries_{month.suffix} IN EXCLUSIVE MODE"
            )
        found = await tx.fetchrow(
            "SELECT (SELECT COUNT(*) FROM transactions"
            "        WHERE created_at_ms >= $1 AND created_at_ms < $2) AS transactions,"
            " (SELECT COUNT(*) FROM transactions WHERE state = 'pending'"
            "        AND created_at_ms >= $1 AND created_at_ms < $2) AS pending,"
            " (SELECT COUNT(*) FROM ledger_entries"
            "        WHERE created_at_ms >= $1 AND created_at_ms < $2) AS entries,"
            " (SELECT COALESCE(MAX(id), 0) FROM ledger_entries"
            "        WHERE created_at_ms >= $1 AND created_at_ms < $2) AS last_entry",
            *bounds,
        )
        assert found is not None
        if int(found["pending"]) > 0:
            raise OperatorError(f"{month.label}: a pending transaction appeared; not archived")
        if (int(found["transactions"]), int(found["entries"])) != (
            counts["transactions"],
            counts["ledger_entries"],
        ):
            raise OperatorError(f"{month.label}: rows changed during the export; not archived")
        if int(found["last_entry"]) > position:
            raise OperatorError(
                f"{month.label}: entries after the checkpoint at {position}; reconcile and retry"
            )
        keys = await tx.execute(_KEEP_ANSWERS, *bounds)
        carried = await money.month_carry(tx, *bounds)
        if postgres:
            for table in ("transactions", "ledger_entries"):
                await tx.execute(
                    f"ALTER TABLE {table} DETACH PARTITION"
                    f" {PARTITION_SCHEMA}.{table}_{month.suffix}"
                )
                await tx.execute(f"DROP TABLE {PARTITION_SCHEMA}.{table}_{month.suffix}")
        else:
            for table in ("ledger_entries", "transactions"):
                await tx.execute(
                    f"DELETE FROM {table} WHERE created_at_ms >= $1 AND created_at_ms < $2",
                    *bounds,
                )
        # At the cut-off (the first month kept), so a month is archived once: the carried
        # entries join the history of the months kept, and a later archive folds them in.
        await money.carry_forward(tx, carried, f"archive:{month.label}", carry_at_ms)
    return keys
