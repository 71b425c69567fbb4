"""Reconciliation: prove the cached balances against the append-only ledger, with checkpoints.

What is proved (each difference is listed, at most ``MAX_LISTED`` of a kind):

1. every step of every transaction or adjustment sums to zero per currency;
2. every wallet's ``available`` / ``held`` / ``pending_in`` equal the sums of its entries;
3. ``held`` equals the pending withdrawals and ``pending_in`` the pending deposits;
4. every transaction has exactly the entries its state implies (2 while pending, 4 when final,
   none for a rollback that arrived before its original).

**Checkpoints.** ``checkpoint_balances`` holds, per account (wallet account, partner, operator),
the sum of its entries up to a ledger position (``position``, an entry id), and
``reconcile_checkpoints`` records every run that found nothing: every entry up to its
``position`` is in the balances. Two ways to run:

- ``incremental`` (``qwallet reconcile``, the console): reads only the entries after the newest
  checkpoint, so its time grows with the entries written since, not with history, in short
  transactions (ranges of ``RANGE_BATCH`` entries, then batches of ``WALLET_BATCH`` moved
  wallets; ``incremental`` says why that is still a proof). For every account those entries
  touch, checkpoint balance + new entries must equal the cached balance; the new entries' steps
  must balance; every transaction they belong to, and every pending one created since the
  checkpoint, must have its entries; held / pending-in of the touched wallets must match their
  pending transactions. A checkpoint is written when nothing differs. A wallet nobody touched
  since the checkpoint is not read: damage to it (a cached balance changed by hand, an old
  entry edited) is what ``--full`` finds.
- ``full`` (``qwallet reconcile --full``): proves everything from the first entry, in bounded
  batches, each its own short transaction (never one long one, never near the pool's
  ``command_timeout``): wallets by id range (``WALLET_BATCH`` at a time: balances, holds, entry
  counts, and their checkpoint balances recomputed from scratch), then the ledger by entry-id
  range (``ENTRY_BATCH``: steps, partner and operator balances). It reports progress.

**Batches and the statement bound.** Each batch is sized to take about ``BATCH_TARGET_S``
(``_Pace``), but the first batches of an old ledger on cold caches can still be slow: one that
meets the store's statement bound (``StatementTimeoutError``) is retried at a quarter of its
size, and no later batch grows back to the size that failed. Nothing of a failed batch is kept
(its counts and findings are gathered apart and added only when it completes, and what it wrote
is idempotent: ``_ADVANCE`` skips entries at or below an account's position, the wallet
checkpoint is recomputed whole), so a retry proves the same as a first attempt. Only a batch of
a single unit that meets the bound fails the run.

**The position.** PostgreSQL hands out entry ids before the inserting transaction commits, so
an id can become visible after a higher one. The position is therefore read under a brief
``SHARE`` lock of ``ledger_entries`` (``safe_position``), which waits for the writers in flight
(at most ``POSITION_LOCK_TIMEOUT_MS``, retried) and is released at once: every id at or below
it is committed or gone, and every later one is above it. Checks run on one snapshot per
transaction (``REPEATABLE READ``), where a wallet's cached balance and its entries agree.
SQLite serializes writers, so its newest id is always such a position.

``run_reconcile`` is the operator's run: a ``reconcile.run`` audit entry and a
``reconcile_runs`` row (time, ok, number of differences), so every server's ``/metrics``
exports the newest result (``qwallet_reconcile_last_ok``) whichever process ran it.
``reconcile`` is the same full proof reading only (tests, the benchmark).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from qwallet.service import audit
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction, StatementTimeoutError

MAX_LISTED = 100
WALLET_BATCH = 500
ENTRY_BATCH = 50_000
# The incremental run's entry ranges: smaller than the full run's, since each range also counts
# the entries of every transaction it names and moves the accounts it touches (measured: 1.5 to
# 4.5 s per 50,000 entries on a shared 2-core machine; a range of 10,000 stays far from the
# pool's 10 s command_timeout).
RANGE_BATCH = 10_000
POSITION_LOCK_TIMEOUT_MS = 100
POSITION_ATTEMPTS = 30
# How far apart the clocks of the servers and of the run may be (pending transactions created
# since a checkpoint are found by their creation time).
CLOCK_MARGIN_MS = 10 * 60_000
WALLET_ACCOUNTS = ("available", "held", "pending_in")
# PostgreSQL compiles a statement whose estimated cost passes jit_above_cost (100,000 by
# default) to machine code before running it. The batches' statements are short index work, but
# their estimates grow with the partitions and rows stored, so on a grown ledger every batch
# paid the compilation: one entry range of 10,000 entries took 737 ms of which about 700 were
# JIT, and 40 ms without it (3,000,000 stored transactions, 11 monthly partitions;
# docs/benchmarks.md). SET LOCAL: for the batch's transaction only, so it holds behind a
# transaction-mode pooler too.
NO_JIT = "SET LOCAL jit = off"

# Progress of a run: (units done, units in all). A unit is a wallet batch or an entry batch; the
# total is re-estimated as the batches change size (see _Pace), so it may grow during a run.
Progress = Callable[[int, int], None]

# The time one batch should take. The fixed sizes above are the largest a batch may be; a batch
# that takes longer than this halves the next one, one under a quarter of it doubles the next
# (up to the fixed size). Why: what a batch costs grows with history per wallet (a wallet batch
# reads its wallets' entries: 500 wallets held 400,000 entries at 20 M transactions), so a fixed
# size that suits a young ledger meets the pool's 10 s command_timeout on an old one.
BATCH_TARGET_S = 1.0


class _Pace:
    """Batch sizes that keep each batch near ``BATCH_TARGET_S``."""

    def __init__(self, largest: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.largest = max(1, largest)
        self._clock = clock
        # Start at an eighth: the first batch of an old ledger must not be the one that times out.
        self.size = max(1, self.largest // 8)
        self._started = 0.0

    def start(self) -> int:
        self._started = self._clock()
        return self.size

    def done(self) -> None:
        elapsed_s = self._clock() - self._started
        if elapsed_s > BATCH_TARGET_S:
            self.size = max(1, self.size // 2)
        elif elapsed_s < BATCH_TARGET_S / 4:
            self.size = min(self.largest, self.size * 2)

    def timed_out(self) -> bool:
        """The batch met the statement bound: retry at a quarter of its size, and never grow
        back to half of it. False when the batch was a single unit (nothing smaller to try)."""
        if self.size <= 1:
            return False
        self.largest = max(1, self.size // 2)
        self.size = max(1, self.size // 4)
        return True

    def batches_for(self, units: int) -> int:
        return -(-max(0, units) // self.size)


# The checkpoint owner of an entry: the player, ``partner:<id>`` or ``operator``.
_OWNER = (
    "CASE WHEN e.player_id IS NOT NULL THEN e.player_id"
    " WHEN e.partner_id IS NOT NULL THEN 'partner:' || CAST(e.partner_id AS TEXT)"
    " ELSE 'operator' END"
)

_EXPECTED_ENTRIES = (
    "CASE WHEN t.amount_minor IS NULL THEN 0 WHEN t.state = 'pending' THEN 2 ELSE 4 END"
)

# -- incremental: entry ranges ($1, $2] by primary key, then batches of the wallets they moved --

# A step's owner is its transaction or its adjustment (exactly one is set, ck_ledger_entries_owner):
# grouped by both columns, not by COALESCE of them, since the transaction id is a uuid and the
# adjustment id text on PostgreSQL (migration 0014). ``_owner`` joins them again. Both runs use
# it: the incremental run on its entry ranges, ``--full`` on its entry batches.
_UNBALANCED_STEPS = """
SELECT transaction_id, adjustment_id, phase, currency, SUM(amount_minor) AS total
FROM ledger_entries WHERE id > $1 AND id <= $2
GROUP BY transaction_id, adjustment_id, phase, currency
HAVING SUM(amount_minor) <> 0
"""


# Entries of a step within the run's entries ($4, $5] (ix_ledger_entries_transaction / _adjustment).
_STEP_TOTAL_SINCE = """
SELECT COALESCE(SUM(amount_minor), 0) AS total FROM ledger_entries
WHERE (transaction_id = $1 OR adjustment_id = $6) AND phase = $2 AND currency = $3
  AND id > $4 AND id <= $5
"""

# The transactions of the entries ($1, $2], each with its entries counted on this snapshot. An
# entry of a transaction that does not exist shows as expecting -1 entries.
#
# Why it reads the partitions of the transactions' months only (PostgreSQL, migration 0011):
# looked up by id alone, a transaction and its entries are an index descent in *every* monthly
# partition, so what a range reads grows with the months kept (107,807 buffers per range of
# 10,000 entries against 26,828 with the partition key, 11 partitions; docs/benchmarks.md).
# Both lookups therefore carry the partition key:
#
# - the transaction is first sought among those created from $4 before to $3 after the entry's
#   own time (its begin entries carry its creation time; a later step's, the time of a later
#   call); only if it is not there, and then only for it, by id alone (COALESCE evaluates its
#   second argument only when the first is NULL): exact whatever the clocks;
# - its entries are counted from $3 (CLOCK_MARGIN_MS) before its creation, the margin the run
#   already allows the servers' clocks (_PENDING_SINCE). An entry of the range dated earlier
#   than that is listed itself, with the transaction counted whole, so the bound never hides an
#   entry the range holds; an older one outside the range was counted by the run that read it.
# The CTE is MATERIALIZED so that each lookup runs once per transaction (inlined, every use of
# created_at_ms would be a subquery of its own).
_RANGE_ENTRY_COUNTS = """
WITH v AS MATERIALIZED (
    SELECT w.id, w.first_ms,
           COALESCE(
               (SELECT t.created_at_ms FROM transactions t
                 WHERE t.qw_transaction_id = w.id
                   AND t.created_at_ms >= w.first_ms - $4 AND t.created_at_ms <= w.first_ms + $3),
               (SELECT t.created_at_ms FROM transactions t WHERE t.qw_transaction_id = w.id)
           ) AS created_at_ms
    FROM (SELECT transaction_id AS id, MIN(created_at_ms) AS first_ms FROM ledger_entries
          WHERE id > $1 AND id <= $2 AND transaction_id IS NOT NULL
          GROUP BY transaction_id) w
)
SELECT x.qw_transaction_id, x.state, x.entries FROM (
    SELECT v.id AS qw_transaction_id, v.first_ms, v.created_at_ms,
           (SELECT t.state FROM transactions t
             WHERE t.qw_transaction_id = v.id AND t.created_at_ms = v.created_at_ms) AS state,
           (SELECT CASE WHEN t.amount_minor IS NULL THEN 0 WHEN t.state = 'pending' THEN 2
                        ELSE 4 END
              FROM transactions t
             WHERE t.qw_transaction_id = v.id AND t.created_at_ms = v.created_at_ms) AS expected,
           CASE WHEN v.first_ms >= v.created_at_ms - $3
                THEN (SELECT COUNT(*) FROM ledger_entries e WHERE e.transaction_id = v.id
                         AND e.created_at_ms >= v.created_at_ms - $3)
                ELSE (SELECT COUNT(*) FROM ledger_entries e WHERE e.transaction_id = v.id)
           END AS entries
    FROM v
) x
WHERE x.entries <> COALESCE(x.expected, -1) OR x.first_ms < x.created_at_ms - $3
"""

# How far before an entry's time the first lookup of its transaction looks (_RANGE_ENTRY_COUNTS):
# a hold is confirmed or rolled back within minutes, so a day covers almost every step and
# spans one or two monthly partitions; an older transaction is found by its id alone.
RECENT_TRANSACTION_MS = 86_400_000

# Pending transactions created since the checkpoint ($1, with a margin for clocks): a pending
# one without any entry has no entry to be found by (ix_transactions_pending). Its entries are
# counted from $2 (CLOCK_MARGIN_MS) before its creation, as in _RANGE_ENTRY_COUNTS: the months
# before are not read, and an entry dated earlier lies in a range that lists it.
_PENDING_SINCE = """
SELECT y.qw_transaction_id, 'pending' AS state, y.entries FROM (
    SELECT t.qw_transaction_id,
           (SELECT COUNT(*) FROM ledger_entries e
             WHERE e.transaction_id = t.qw_transaction_id
               AND e.created_at_ms >= t.created_at_ms - $2) AS entries
    FROM transactions t WHERE t.state = 'pending' AND t.created_at_ms >= $1
) y
WHERE y.entries <> 2
"""

# The wallets a run moved past the checkpoint ($1 position, $2 owner: the keyset cursor; $3 the
# entry phase's target), a batch at a time: a range of ix_checkpoint_balances_position.
_WALLET_OWNER = "owner NOT LIKE 'partner:%' AND owner <> 'operator'"

_MOVED_WALLETS = f"""
SELECT position, owner FROM checkpoint_balances
WHERE position > $1 AND position <= $4 AND (position > $2 OR (position = $2 AND owner > $3))
  AND {_WALLET_OWNER}
ORDER BY position, owner LIMIT $5
"""

_MOVED_WALLET_COUNT = f"""
SELECT COUNT(DISTINCT owner) AS n FROM checkpoint_balances WHERE position > $1 AND {_WALLET_OWNER}
"""

_RANGE_WALLETS = """
SELECT DISTINCT player_id FROM ledger_entries
WHERE id > $1 AND id <= $2 AND player_id IS NOT NULL
"""

# The wallets' held and pending-in amounts against their pending transactions, as two probes of
# ix_transactions_pending_player per wallet (correlated subqueries). Why not a join: PostgreSQL
# took a hash join that read the whole pending backlog for every batch (26,690 pending rows for
# 500 wallets on a scratch database, docs/benchmarks.md), so a batch cost grew with the backlog
# and a run with backlog x batches; a probe per wallet costs the same whatever the backlog.
_HOLDS = """
SELECT x.id, x.held_minor, x.pending_in_minor, x.withdrawals, x.deposits FROM (
    SELECT p.id, p.held_minor, p.pending_in_minor,
        (SELECT COALESCE(SUM(t.amount_minor), 0) FROM transactions t
          WHERE t.player_id = p.id AND t.state = 'pending' AND t.kind = 'withdrawal')
          AS withdrawals,
        (SELECT COALESCE(SUM(t.amount_minor), 0) FROM transactions t
          WHERE t.player_id = p.id AND t.state = 'pending' AND t.kind = 'deposit') AS deposits
    FROM players p WHERE {wallets}
) x
WHERE x.held_minor <> x.withdrawals OR x.pending_in_minor <> x.deposits
"""

_WALLET_HOLDS = _HOLDS.replace("{wallets}", "p.id IN ({marks})")

_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")

# Moves every touched account's balance to position $2 (entries after its own position, up to
# $2). A balance is never moved back: a concurrent run may already have taken it further.
_ADVANCE = f"""
INSERT INTO checkpoint_balances (owner, account, currency, balance_minor, position)
SELECT m.owner, m.account, m.currency, COALESCE(c.balance_minor, 0) + SUM(m.amount_minor), $2
FROM (SELECT {_OWNER} AS owner, e.account, e.currency, e.id, e.amount_minor
      FROM ledger_entries e WHERE e.id > $1 AND e.id <= $2) m
LEFT JOIN checkpoint_balances c
       ON c.owner = m.owner AND c.account = m.account AND c.currency = m.currency
WHERE m.id > COALESCE(c.position, 0)
GROUP BY m.owner, m.account, m.currency, c.balance_minor
ON CONFLICT (owner, account, currency) DO UPDATE
SET balance_minor = excluded.balance_minor, position = excluded.position
WHERE checkpoint_balances.position <= excluded.position
"""

# -- full: wallet batches ($1..$2 a range of player ids, $3 the position) ----------------------

# The entries are read by a range of ix_ledger_entries_player (the batch's ids), not joined per
# player: the planner sees a small range of a large table whatever it thinks of the join.
_BATCH_WALLETS = """
SELECT p.id, p.currency, p.available_minor, p.held_minor, p.pending_in_minor,
       COALESCE(s.available, 0) AS available, COALESCE(s.held, 0) AS held,
       COALESCE(s.pending_in, 0) AS pending_in
FROM players p LEFT JOIN (
    SELECT player_id,
        SUM(CASE WHEN account = 'available' THEN amount_minor ELSE 0 END) AS available,
        SUM(CASE WHEN account = 'held' THEN amount_minor ELSE 0 END) AS held,
        SUM(CASE WHEN account = 'pending_in' THEN amount_minor ELSE 0 END) AS pending_in
    FROM ledger_entries WHERE player_id >= $1 AND player_id <= $2 GROUP BY player_id
) s ON s.player_id = p.id
WHERE p.id >= $1 AND p.id <= $2
"""

_BATCH_HOLDS = _HOLDS.format(wallets="p.id >= $1 AND p.id <= $2")

_BATCH_ENTRY_COUNTS = f"""
SELECT x.qw_transaction_id, x.state, x.entries FROM (
    SELECT t.qw_transaction_id, t.state, t.amount_minor,
           (SELECT COUNT(*) FROM ledger_entries e
             WHERE e.transaction_id = t.qw_transaction_id) AS entries
    FROM transactions t WHERE t.player_id >= $1 AND t.player_id <= $2
) x
WHERE x.entries <> {_EXPECTED_ENTRIES.replace("t.", "x.")}
"""

_BATCH_TRANSACTIONS = (
    "SELECT COUNT(*) AS n FROM transactions WHERE player_id >= $1 AND player_id <= $2"
)

# Every wallet account of the batch, recomputed from scratch at position $3.
_BATCH_CHECKPOINT = """
INSERT INTO checkpoint_balances (owner, account, currency, balance_minor, position)
SELECT p.id, a.account, p.currency, COALESCE(s.total, 0), $3
FROM players p
CROSS JOIN (SELECT 'available' AS account UNION ALL SELECT 'held' UNION ALL SELECT 'pending_in') a
LEFT JOIN (
    SELECT player_id, account, SUM(amount_minor) AS total FROM ledger_entries
    WHERE player_id >= $1 AND player_id <= $2 AND id <= $3 GROUP BY player_id, account
) s ON s.player_id = p.id AND s.account = a.account
WHERE p.id >= $1 AND p.id <= $2
ON CONFLICT (owner, account, currency) DO UPDATE
SET balance_minor = excluded.balance_minor, position = excluded.position
WHERE checkpoint_balances.position <= excluded.position
"""

# -- full: entry batches ($1, $2] of ids ----------------------------------------------------------

_CHUNK_ACCOUNTS = f"""
SELECT {_OWNER} AS owner, e.account, e.currency, SUM(e.amount_minor) AS total, COUNT(*) AS n
FROM ledger_entries e WHERE e.id > $1 AND e.id <= $2 AND e.player_id IS NULL
GROUP BY {_OWNER}, e.account, e.currency
"""

_CHUNK_COUNT = "SELECT COUNT(*) AS n FROM ledger_entries WHERE id > $1 AND id <= $2"

# A step cut by a batch boundary: summed whole (ix_ledger_entries_transaction / _adjustment).
_STEP_TOTAL = """
SELECT COALESCE(SUM(amount_minor), 0) AS total FROM ledger_entries
WHERE (transaction_id = $1 OR adjustment_id = $5) AND phase = $2 AND currency = $3 AND id <= $4
"""


@dataclass
class ReconciliationReport:
    players: int = 0
    transactions: int = 0
    entries: int = 0
    full: bool = True
    # The entries checked: ids above ``since_position`` up to ``position``.
    since_position: int = 0
    position: int = 0
    # Whether this run wrote a checkpoint at ``position`` (only a run that found nothing does).
    checkpoint: bool = False
    unbalanced: list[dict[str, Any]] = field(default_factory=list)
    balance_mismatches: list[dict[str, Any]] = field(default_factory=list)
    hold_mismatches: list[dict[str, Any]] = field(default_factory=list)
    entry_count_mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """How many differences were listed (each kind is capped at ``MAX_LISTED``)."""
        return (
            len(self.unbalanced)
            + len(self.balance_mismatches)
            + len(self.hold_mismatches)
            + len(self.entry_count_mismatches)
        )

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "full": self.full,
            "sincePosition": self.since_position,
            "position": self.position,
            "checkpoint": self.checkpoint,
            "players": self.players,
            "transactions": self.transactions,
            "entries": self.entries,
            "unbalanced": self.unbalanced,
            "balanceMismatches": self.balance_mismatches,
            "holdMismatches": self.hold_mismatches,
            "entryCountMismatches": self.entry_count_mismatches,
        }

    def _add(self, target: list[dict[str, Any]], rows: Sequence[Row]) -> None:
        room = MAX_LISTED - len(target)
        target.extend({key: _plain(value) for key, value in row.items()} for row in rows[:room])

    def _absorb(self, part: ReconciliationReport) -> None:
        """Add what one completed batch counted and found (see ``_part``)."""
        self.players += part.players
        self.transactions += part.transactions
        self.entries += part.entries
        self._add(self.unbalanced, part.unbalanced)
        self._add(self.balance_mismatches, part.balance_mismatches)
        self._add(self.hold_mismatches, part.hold_mismatches)
        self._add(self.entry_count_mismatches, part.entry_count_mismatches)

    def _part(self) -> ReconciliationReport:
        """An empty report for one batch: kept only if the batch completes (``_absorb``)."""
        return ReconciliationReport(
            full=self.full, since_position=self.since_position, position=self.position
        )


def _owner(row: Row) -> str:
    """The step's owner as reported: its transaction id, else its adjustment id."""
    return str(row["transaction_id"] if row["transaction_id"] is not None else row["adjustment_id"])


@asynccontextmanager
async def _snapshot(db: SqlDatabase, *, serialize: bool = False) -> AsyncIterator[SqlTransaction]:
    """One transaction on one snapshot. ``serialize`` makes runs that write checkpoints wait
    for each other (taken before the snapshot, so the second sees what the first wrote)."""
    async with db.transaction() as tx:
        if db.dialect == "postgresql":
            await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await tx.execute(NO_JIT)
            if serialize:
                await tx.execute("LOCK TABLE checkpoint_balances IN EXCLUSIVE MODE")
        yield tx


async def safe_position(db: SqlDatabase) -> int:
    """The newest ledger entry id below which no entry can still appear (see module doc)."""
    for attempt in range(1, POSITION_ATTEMPTS + 1):
        try:
            async with db.transaction() as tx:
                if db.dialect == "postgresql":
                    # The wait queues new writers behind us: keep it short and retry instead.
                    await tx.execute(f"SET LOCAL lock_timeout = {POSITION_LOCK_TIMEOUT_MS}")
                    await tx.execute("LOCK TABLE ledger_entries IN SHARE MODE")
                row = await tx.fetchrow("SELECT COALESCE(MAX(id), 0) AS id FROM ledger_entries")
            assert row is not None
            return int(row["id"])
        except Exception as error:  # asyncpg's LockNotAvailableError; the store hides the type
            if "lock" not in str(error).lower() or attempt == POSITION_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


async def last_checkpoint(db: SqlDatabase) -> tuple[int, int] | None:
    """(position, time in ms) of the furthest checkpoint, or None before the first."""
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT position, at_ms FROM reconcile_checkpoints ORDER BY position DESC LIMIT 1"
        )
    return None if row is None else (int(row["position"]), int(row["at_ms"]))


async def reconcile(db: SqlDatabase, progress: Progress | None = None) -> ReconciliationReport:
    """The full proof, reading only (no checkpoint)."""
    return await _full(db, write=False, progress=progress)


async def incremental(
    db: SqlDatabase, now_ms: int, progress: Progress | None = None
) -> ReconciliationReport:
    """Check the entries after the newest checkpoint; write a checkpoint if nothing differs.

    Cost: the entries since the checkpoint (primary-key ranges of ``RANGE_BATCH``), the
    accounts and the transactions they touch, and the pending backlog; never the settled
    history. No transaction reads more than one entry range or one batch of ``WALLET_BATCH``
    wallets (and the entries written meanwhile), so a large backlog is many short transactions.
    Before the first checkpoint it is a full run.

    Why the chunks still prove what one transaction did (docs/operations.md):

    1. *Entries* (one transaction per range ``(lo, hi]`` up to a safe position ``target``): the
       range's steps are summed (a step cut by a range boundary is summed whole), the
       transactions it names must have their entries (state and count read on one snapshot),
       and every account it touches is moved to ``hi``. Afterwards, for every account,
       balance = the sum of its entries up to its own position, and it has no entry between its
       position and ``hi``: so each balance is the sum of its entries up to ``target``.
    2. *Wallets* (one transaction per batch of the wallets moved in 1, found by
       ``ix_checkpoint_balances_position``): each runs on a snapshot taken while no wallet
       writer is in flight (``_exact_snapshot``), so it sees exactly the entries up to a
       position ``P`` and the cached balances written with them. It first moves every account
       over the entries written since the previous batch (``(frontier, P]``, checked as in 1),
       after which every balance is the sum of its entries up to ``P``: the batch's wallets, and
       those the new entries touched, must then equal their cached balances exactly, with no
       entry read twice and none read past ``P``. Held / pending-in are compared with the
       pending transactions on the same snapshot.
    3. A checkpoint at the last ``P`` is written only if nothing differed.
    """
    checkpoint = await last_checkpoint(db)
    if checkpoint is None:
        return await _full(db, write=True, now_ms=now_ms, progress=progress)
    since, since_at_ms = checkpoint
    target = max(await safe_position(db), since)
    report = ReconciliationReport(full=False, since_position=since, position=since)
    tracker = _StepTracker(since)
    # Progress units: the entry ranges, then the wallet batches (counted once the ranges are done).
    range_pace = _Pace(RANGE_BATCH)
    done = 0
    start = since
    while start < target:
        end = min(start + range_pace.start(), target)
        part, trial = report._part(), tracker.trial()
        try:
            async with _snapshot(db, serialize=True) as tx:
                await _advance_range(tx, part, trial, start, end, target)
        except StatementTimeoutError:
            if not range_pace.timed_out():
                raise
            continue
        range_pace.done()
        report._absorb(part)
        tracker.listed = trial.listed
        start = end
        done += 1
        if progress is not None:
            progress(done, done + range_pace.batches_for(target - start) + 1)
    ranges = done
    async with db.transaction() as tx:
        moved = await tx.fetchrow(_MOVED_WALLET_COUNT, since)
    total = ranges + 1 + (int(moved["n"]) if moved is not None else 0) // WALLET_BATCH
    frontier = target
    after: tuple[int, str] = (since, "")
    while True:
        async with db.transaction() as tx:
            rows = await tx.fetch(_MOVED_WALLETS, since, after[0], after[1], target, WALLET_BATCH)
        async with _exact_snapshot(db) as (tx, position):
            if position > frontier:
                await _advance_range(tx, report, tracker, frontier, position, position)
                wallets = {str(r["owner"]) for r in rows}
                wallets |= {
                    str(r["player_id"]) for r in await tx.fetch(_RANGE_WALLETS, frontier, position)
                }
                frontier = position
            else:
                wallets = {str(r["owner"]) for r in rows}
            await _check_wallets(tx, report, sorted(wallets))
        done += 1
        if progress is not None:
            progress(min(done, total - 1), total)
        if not rows:
            break
        after = (int(rows[-1]["position"]), str(rows[-1]["owner"]))
    report.position = frontier
    async with _snapshot(db, serialize=True) as tx:
        report._add(
            report.entry_count_mismatches,
            await tx.fetch(_PENDING_SINCE, since_at_ms - CLOCK_MARGIN_MS, CLOCK_MARGIN_MS),
        )
        counted = await tx.fetchrow(_MOVED_WALLET_COUNT, since)
        report.players = int(counted["n"]) if counted is not None else 0
        if report.ok and frontier > since:
            await _write_checkpoint(tx, report, now_ms)
        elif report.ok:
            report.checkpoint = True  # nothing new: the newest checkpoint still holds
    if progress is not None:
        progress(total, total)
    return report


class _StepTracker:
    """Steps already reported (a step cut by a range boundary is seen in two ranges)."""

    def __init__(self, since: int) -> None:
        self.since = since
        self.listed: set[tuple[object, object, object]] = set()

    def trial(self) -> _StepTracker:
        """A copy for one batch: kept only if the batch completes."""
        copy = _StepTracker(self.since)
        copy.listed = set(self.listed)
        return copy


async def _advance_range(
    tx: SqlTransaction,
    report: ReconciliationReport,
    tracker: _StepTracker,
    start: int,
    end: int,
    bound: int,
) -> None:
    """Check the entries ``(start, end]`` and move the accounts they touch to ``end``.

    ``bound`` is a safe position at or above ``end``: a step cut by ``end`` is summed whole
    over the entries up to it (all of a step's entries are written by one database
    transaction, so none lies beyond a safe position when one lies below it).
    """
    for row in await tx.fetch(_UNBALANCED_STEPS, start, end):
        key = (_owner(row), row["phase"], row["currency"])
        if key in tracker.listed:
            continue
        whole = await tx.fetchrow(
            _STEP_TOTAL_SINCE,
            row["transaction_id"],
            row["phase"],
            row["currency"],
            tracker.since,
            bound,
            row["adjustment_id"],
        )
        total = int(whole["total"]) if whole is not None else 0
        if total != 0 and len(report.unbalanced) < MAX_LISTED:
            tracker.listed.add(key)
            report.unbalanced.append(
                {"owner": key[0], "phase": key[1], "currency": key[2], "total": total}
            )
    report._add(
        report.entry_count_mismatches,
        await tx.fetch(_RANGE_ENTRY_COUNTS, start, end, CLOCK_MARGIN_MS, RECENT_TRANSACTION_MS),
    )
    counted = await tx.fetchrow(
        "SELECT COUNT(*) AS entries, COUNT(DISTINCT transaction_id) AS transactions"
        " FROM ledger_entries WHERE id > $1 AND id <= $2",
        start,
        end,
    )
    assert counted is not None
    report.entries += int(counted["entries"])
    report.transactions += int(counted["transactions"])
    await tx.execute(_ADVANCE, start, end)


async def _check_wallets(
    tx: SqlTransaction, report: ReconciliationReport, wallets: list[str]
) -> None:
    """On an exact snapshot whose balances are all at its position: cached == checkpoint."""
    if not wallets:
        return
    marks = ", ".join(f"${i}" for i in range(1, len(wallets) + 1))
    stored: dict[tuple[str, str], int] = {
        (str(r["owner"]), str(r["account"])): int(r["balance_minor"])
        for r in await tx.fetch(
            f"SELECT owner, account, balance_minor FROM checkpoint_balances"
            f" WHERE owner IN ({marks})",
            *wallets,
        )
    }
    for wallet in await tx.fetch(
        "SELECT id, available_minor, held_minor, pending_in_minor FROM players"
        f" WHERE id IN ({marks})",
        *wallets,
    ):
        player = str(wallet["id"])
        ledger = {account: stored.get((player, account), 0) for account in WALLET_ACCOUNTS}
        cached = {account: int(wallet[f"{account}_minor"]) for account in WALLET_ACCOUNTS}
        if (ledger != cached or min(cached.values()) < 0) and len(
            report.balance_mismatches
        ) < MAX_LISTED:
            report.balance_mismatches.append(dict(_mismatch(player, cached, ledger)))
    report._add(report.hold_mismatches, await tx.fetch(_WALLET_HOLDS.format(marks=marks), *wallets))


@asynccontextmanager
async def _exact_snapshot(db: SqlDatabase) -> AsyncIterator[tuple[SqlTransaction, int]]:
    """A checkpoint-writing transaction whose snapshot holds exactly the entries up to the
    position it returns, and every cached balance written with them.

    PostgreSQL: a second transaction takes the brief ``SHARE`` lock of ``ledger_entries``
    (``safe_position``'s), so no wallet writer is in flight, reads the position and exports its
    snapshot; this one imports it and the lock is released at once. Writers wait a few round
    trips, as for ``safe_position``. SQLite: the transaction is the one writer.
    """
    async with db.transaction() as tx:
        if db.dialect != "postgresql":
            row = await tx.fetchrow("SELECT COALESCE(MAX(id), 0) AS id FROM ledger_entries")
            assert row is not None
            yield tx, int(row["id"])
            return
        await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await tx.execute(NO_JIT)
        # Before the snapshot, so a concurrent run's writes are seen (LOCK is no query).
        await tx.execute("LOCK TABLE checkpoint_balances IN EXCLUSIVE MODE")
        position = await _import_quiet_snapshot(db, tx)
        yield tx, position


async def _import_quiet_snapshot(db: SqlDatabase, target: SqlTransaction) -> int:
    for attempt in range(1, POSITION_ATTEMPTS + 1):
        try:
            async with db.transaction() as holder:
                await holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                await holder.execute(f"SET LOCAL lock_timeout = {POSITION_LOCK_TIMEOUT_MS}")
                await holder.execute("LOCK TABLE ledger_entries IN SHARE MODE")
                row = await holder.fetchrow(
                    "SELECT COALESCE(MAX(id), 0) AS id, pg_export_snapshot() AS snapshot"
                    " FROM ledger_entries"
                )
                assert row is not None
                snapshot = str(row["snapshot"])
                if not _SNAPSHOT_ID.fullmatch(snapshot):
                    raise AssertionError(f"unexpected snapshot id {snapshot!r}")
                await target.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            return int(row["id"])
        except Exception as error:  # asyncpg's LockNotAvailableError; the store hides the type
            if "lock" not in str(error).lower() or attempt == POSITION_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _mismatch(player: str, cached: dict[str, int], ledger: dict[str, int]) -> Row:
    return {
        "id": player,
        "available_minor": cached["available"],
        "held_minor": cached["held"],
        "pending_in_minor": cached["pending_in"],
        "available": ledger["available"],
        "held": ledger["held"],
        "pending_in": ledger["pending_in"],
    }


async def _write_checkpoint(tx: SqlTransaction, report: ReconciliationReport, now_ms: int) -> None:
    await tx.execute(
        "INSERT INTO reconcile_checkpoints (position, at_ms, full_run, entries)"
        " VALUES ($1, $2, $3, $4)",
        report.position,
        now_ms,
        int(report.full),
        report.entries,
    )
    report.checkpoint = True


async def _full(
    db: SqlDatabase,
    *,
    write: bool,
    now_ms: int = 0,
    progress: Progress | None = None,
) -> ReconciliationReport:
    """Everything, in batches: wallets by id range, then the ledger by entry-id range.

    Cost: all of history, but no batch reads more than ``WALLET_BATCH`` wallets' entries and
    transactions or ``ENTRY_BATCH`` entries, each in its own transaction, and ``_Pace`` shrinks
    the batches to about ``BATCH_TARGET_S`` each where history per wallet makes them slow.
    """
    position = await safe_position(db)
    report = ReconciliationReport(full=True, position=position)
    async with db.transaction() as tx:
        counted = await tx.fetchrow(
            "SELECT (SELECT COUNT(*) FROM players) AS wallets,"
            " (SELECT COALESCE(MIN(id), 1) - 1 FROM ledger_entries) AS start"
        )
    assert counted is not None
    wallets, first_entry = int(counted["wallets"]), min(int(counted["start"]), position)
    wallet_pace, entry_pace = _Pace(WALLET_BATCH), _Pace(ENTRY_BATCH)
    checked = 0
    done = 0

    def report_progress(entries_left: int) -> None:
        if progress is not None:
            left = wallet_pace.batches_for(wallets - checked) + entry_pace.batches_for(entries_left)
            progress(done, done + left)

    after = ""
    while True:
        size = wallet_pace.start()
        async with db.transaction() as tx:
            ids = await tx.fetch(
                "SELECT id FROM players WHERE id > $1 ORDER BY id LIMIT $2", after, size
            )
        if not ids:
            break
        first, last = str(ids[0]["id"]), str(ids[-1]["id"])
        part = report._part()
        try:
            await _wallet_batch(db, part, first, last, position, write)
        except StatementTimeoutError:
            if not wallet_pace.timed_out():
                raise
            continue
        wallet_pace.done()
        report._absorb(part)
        after = last
        checked += len(ids)
        done += 1
        report_progress(position - first_entry)
    others: dict[tuple[str, str, str], int] = {}
    start = first_entry
    while start < position:
        end = min(start + entry_pace.start(), position)
        part, moved = report._part(), dict[tuple[str, str, str], int]()
        try:
            await _entry_batch(db, part, report, moved, start, end)
        except StatementTimeoutError:
            if not entry_pace.timed_out():
                raise
            continue
        entry_pace.done()
        report._absorb(part)
        for key, total in moved.items():
            others[key] = others.get(key, 0) + total
        start = end
        done += 1
        report_progress(position - start)
    if progress is not None:
        progress(done, done)
    if write:
        async with _snapshot(db, serialize=True) as tx:
            for (owner, account, currency), balance in sorted(others.items()):
                await tx.execute(
                    "INSERT INTO checkpoint_balances"
                    " (owner, account, currency, balance_minor, position)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner, account, currency)"
                    " DO UPDATE SET balance_minor = excluded.balance_minor,"
                    " position = excluded.position"
                    " WHERE checkpoint_balances.position <= excluded.position",
                    owner,
                    account,
                    currency,
                    balance,
                    position,
                )
            if report.ok:
                await _write_checkpoint(tx, report, now_ms)
    return report


async def _wallet_batch(
    db: SqlDatabase, report: ReconciliationReport, first: str, last: str, position: int, write: bool
) -> None:
    async with _snapshot(db, serialize=write) as tx:
        rows = await tx.fetch(_BATCH_WALLETS, first, last)
        report.players += len(rows)
        for row in rows:
            cached = {account: int(row[f"{account}_minor"]) for account in WALLET_ACCOUNTS}
            ledger = {account: int(row[account]) for account in WALLET_ACCOUNTS}
            if (ledger != cached or min(cached.values()) < 0) and len(
                report.balance_mismatches
            ) < MAX_LISTED:
                report.balance_mismatches.append(dict(_mismatch(str(row["id"]), cached, ledger)))
        report._add(report.hold_mismatches, await tx.fetch(_BATCH_HOLDS, first, last))
        report._add(report.entry_count_mismatches, await tx.fetch(_BATCH_ENTRY_COUNTS, first, last))
        counted = await tx.fetchrow(_BATCH_TRANSACTIONS, first, last)
        report.transactions += int(counted["n"]) if counted is not None else 0
        if write:
            await tx.execute(_BATCH_CHECKPOINT, first, last, position)


async def _entry_batch(
    db: SqlDatabase,
    report: ReconciliationReport,
    earlier: ReconciliationReport,
    others: dict[tuple[str, str, str], int],
    start: int,
    end: int,
) -> None:
    """The entries ``(start, end]``: counted and their steps checked into ``report`` (a step
    already listed in ``earlier``, the run so far, is not listed again), the partner and
    operator accounts they move added to ``others``."""
    async with _snapshot(db) as tx:
        counted = await tx.fetchrow(_CHUNK_COUNT, start, end)
        report.entries += int(counted["n"]) if counted is not None else 0
        for row in await tx.fetch(_UNBALANCED_STEPS, start, end):
            # Non-zero inside the batch: a real difference, or a step cut by the boundary.
            whole = await tx.fetchrow(
                _STEP_TOTAL,
                row["transaction_id"],
                row["phase"],
                row["currency"],
                report.position,
                row["adjustment_id"],
            )
            total = int(whole["total"]) if whole is not None else 0
            owner = _owner(row)
            key = (owner, row["phase"], row["currency"])
            listed = {
                (u["owner"], u["phase"], u["currency"])
                for u in earlier.unbalanced + report.unbalanced
            }
            room = MAX_LISTED - len(earlier.unbalanced)
            if total != 0 and key not in listed and len(report.unbalanced) < room:
                report.unbalanced.append(
                    {
                        "owner": owner,
                        "phase": row["phase"],
                        "currency": row["currency"],
                        "total": total,
                    }
                )
        for row in await tx.fetch(_CHUNK_ACCOUNTS, start, end):
            key = (str(row["owner"]), str(row["account"]), str(row["currency"]))
            others[key] = others.get(key, 0) + int(row["total"])


async def last_run(db: SqlDatabase) -> tuple[int, bool] | None:
    """(time in ms, ok) of the newest recorded run, or ``None`` when none was recorded."""
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT at_ms, ok FROM reconcile_runs ORDER BY id DESC LIMIT 1")
    return None if row is None else (int(row["at_ms"]), bool(row["ok"]))


async def run_reconcile(
    db: SqlDatabase,
    *,
    operator: str,
    now_ms: int,
    full: bool = False,
    progress: Progress | None = None,
) -> ReconciliationReport:
    """The operator's run (CLI, console): incremental by default, ``full`` to prove everything;
    audited, and recorded for ``/metrics``."""
    if full:
        report = await _full(db, write=True, now_ms=now_ms, progress=progress)
    else:
        report = await incremental(db, now_ms, progress)
    async with db.transaction() as tx:
        details = {
            "ok": report.ok,
            "full": report.full,
            "position": report.position,
            "players": report.players,
            "transactions": report.transactions,
        }
        await audit.record(tx, operator, "reconcile.run", None, details, now_ms)
        await tx.execute(
            "INSERT INTO reconcile_runs (at_ms, ok, problems) VALUES ($1, $2, $3)",
            now_ms,
            int(report.ok),
            report.problems,
        )
    return report


def _plain(value: Any) -> Any:
    return int(value) if hasattr(value, "__int__") and not isinstance(value, str) else value
