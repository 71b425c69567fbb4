"""Reconciliation checkpoints on both databases: the incremental run reads only the entries
after the newest checkpoint; ``--full`` proves everything in batches (docs/operations.md)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import pytest

from qwallet.bench.statement_times import TimedDatabase, statement_names
from qwallet.domain.transactions import Kind
from qwallet.service import archive, reconcile
from qwallet.store.sql import SqlDatabase
from tests.store.conftest import Backend
from tests.store.world import (
    DAY_MS,
    NOW_MS,
    add_session,
    begin_call,
    confirm_call,
    rollback_call,
    standard_world,
)

OPERATOR = "tests"


@pytest.fixture(params=["one batch", "small batches"])
def batches(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The damage tests run as they are and with ranges of 3 entries and batches of 1 wallet,
    where every step and every wallet's history straddles some boundary."""
    if request.param == "small batches":
        monkeypatch.setattr(reconcile, "ENTRY_BATCH", 3)
        monkeypatch.setattr(reconcile, "RANGE_BATCH", 3)
        monkeypatch.setattr(reconcile, "WALLET_BATCH", 1)
    return str(request.param)


async def traffic(store: Any, first: int, count: int, token: str = "t1") -> None:
    """Confirmed, rolled-back and pending withdrawals, and confirmed deposits, of one player."""
    for i in range(first, first + count):
        mm, amount = f"{token}-w{i}", 100 + i
        await store.begin(begin_call(Kind.WITHDRAWAL, mm, amount, token=token))
        if i % 3 == 0:
            await store.confirm(confirm_call(Kind.WITHDRAWAL, mm, amount, token=token))
        elif i % 3 == 1:
            await store.rollback(rollback_call(Kind.WITHDRAWAL, mm, token=token))
        deposit = f"{token}-d{i}"
        await store.begin(begin_call(Kind.DEPOSIT, deposit, 50, token=token))
        await store.confirm(confirm_call(Kind.DEPOSIT, deposit, 50, token=token))


async def run(store: SqlDatabase, *, full: bool = False) -> reconcile.ReconciliationReport:
    return await reconcile.run_reconcile(store, operator=OPERATOR, now_ms=1, full=full)


async def one(store: SqlDatabase, sql: str, *args: object) -> Any:
    async with store.transaction() as tx:
        row = await tx.fetchrow(sql, *args)
    assert row is not None
    return next(iter(row.values()))


async def max_entry(store: SqlDatabase) -> int:
    return int(await one(store, "SELECT COALESCE(MAX(id), 0) FROM ledger_entries"))


async def execute(store: SqlDatabase, sql: str, *args: object) -> None:
    async with store.transaction() as tx:
        await tx.execute(sql, *args)


def test_incremental_run_reads_only_new_entries_and_moves_the_checkpoint(
    backend: Backend,
) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 6)
        first = await run(store)
        # No checkpoint yet: the first run proves everything and writes one.
        assert first.ok and first.full and first.checkpoint
        assert first.position == await max_entry(store)
        cached = await one(store, "SELECT available_minor FROM players WHERE id = 'p1'")
        stored = await one(
            store,
            "SELECT balance_minor FROM checkpoint_balances"
            " WHERE owner = 'p1' AND account = 'available' AND currency = 'XAG'",
        )
        assert stored == cached

        await traffic(store, 6, 3, token="t2")
        second = await run(store)
        assert second.ok and not second.full and second.checkpoint
        assert second.since_position == first.position
        assert second.position == await max_entry(store)
        # Only what came after the checkpoint: p2's new entries, not p1's history.
        assert second.entries == await one(
            store, "SELECT COUNT(*) FROM ledger_entries WHERE id > $1", first.position
        )
        assert second.players == 1

        idle = await run(store)
        assert idle.ok and idle.entries == 0 and idle.position == second.position

        # The checkpoint balances equal what a full proof computes from scratch.
        full = await run(store, full=True)
        assert full.ok and full.checkpoint
        assert full.entries == await one(store, "SELECT COUNT(*) FROM ledger_entries")
        async with store.transaction() as tx:
            rows = await tx.fetch(
                "SELECT p.id, p.available_minor, c.balance_minor FROM players p"
                " JOIN checkpoint_balances c ON c.owner = p.id AND c.account = 'available'"
            )
            runs = await tx.fetch("SELECT position, full_run FROM reconcile_checkpoints")
        assert rows and all(r["available_minor"] == r["balance_minor"] for r in rows)
        assert [int(r["full_run"]) for r in runs] == [1, 0, 1]

    backend.run(scenario)


def test_damage_before_the_checkpoint_is_found_by_the_full_run(
    backend: Backend, batches: str
) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 4, token="t2")
        await traffic(store, 0, 4)
        checkpoint = await run(store)
        assert checkpoint.ok and checkpoint.checkpoint
        # An entry of p2 the checkpoint already covers is edited, and p2's cached balance with
        # it, so that the two still agree with each other: only the ledger's steps disagree.
        old = await one(
            store,
            "SELECT MIN(id) FROM ledger_entries WHERE player_id = 'p2' AND account = 'available'"
            " AND transaction_id IS NOT NULL",
        )
        assert int(old) <= checkpoint.position
        await execute(
            store, "UPDATE ledger_entries SET amount_minor = amount_minor - 7 WHERE id = $1", old
        )
        await execute(
            store, "UPDATE players SET available_minor = available_minor - 7 WHERE id = 'p2'"
        )
        # p3's cached balance is changed by hand (no entry): p3 has not moved since.
        await execute(store, "UPDATE players SET available_minor = 5 WHERE id = 'p3'")
        await traffic(store, 4, 2)

        since = await run(store)
        # The incremental run reads p1's new entries only: it does not see the old damage.
        assert since.ok and not since.full

        full = await run(store, full=True)
        assert not full.ok and not full.checkpoint
        assert {u["currency"] for u in full.unbalanced} == {"XAG"}
        assert {m["id"] for m in full.balance_mismatches} == {"p3"}
        latest = await one(store, "SELECT MAX(position) FROM reconcile_checkpoints")
        assert int(latest) == since.position  # no checkpoint from a run that found damage

    backend.run(scenario)


def test_damage_after_the_checkpoint_is_found_by_the_incremental_run(
    backend: Backend, batches: str
) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 3)
        checkpoint = await run(store)
        assert checkpoint.ok
        await traffic(store, 3, 3)
        await traffic(store, 0, 2, token="t2")
        new = await one(
            store,
            "SELECT MAX(id) FROM ledger_entries WHERE player_id = 'p1' AND account = 'available'",
        )
        assert int(new) > checkpoint.position
        await execute(
            store, "UPDATE ledger_entries SET amount_minor = amount_minor + 3 WHERE id = $1", new
        )
        # And p2's cached balance, which also moved after the checkpoint.
        await execute(
            store, "UPDATE players SET available_minor = available_minor + 1 WHERE id = 'p2'"
        )

        found = await run(store)
        assert not found.ok and not found.full and not found.checkpoint
        assert len(found.unbalanced) == 1
        assert {m["id"] for m in found.balance_mismatches} == {"p1", "p2"}
        # Nothing is checkpointed past damage: the next run looks at the same entries again.
        again = await run(store)
        assert again.since_position == checkpoint.position and not again.ok

    backend.run(scenario)


def test_full_run_works_in_small_batches_and_reports_progress(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 2 wallets and 3 entries: every two-entry step straddles some boundary.
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 2)
    monkeypatch.setattr(reconcile, "ENTRY_BATCH", 3)
    seen: list[tuple[int, int]] = []

    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 3)
        await traffic(store, 0, 2, token="t2")
        report = await reconcile.run_reconcile(
            store, operator=OPERATOR, now_ms=1, full=True, progress=lambda d, t: seen.append((d, t))
        )
        assert report.ok, report.as_json()
        entries = int(await one(store, "SELECT COUNT(*) FROM ledger_entries"))
        assert report.entries == entries and report.players == 3
        # 3 wallets in batches of at most 2, then the ledger by id ranges of at most 3.
        start = int(await one(store, "SELECT MIN(id) FROM ledger_entries")) - 1
        least = 2 + -(-(report.position - start) // 3)
        assert seen[-1][0] == seen[-1][1] >= least
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert all(d <= t for d, t in seen)
        # Partner and operator accounts are checkpointed too, and every step sums to zero.
        async with store.transaction() as tx:
            rows = await tx.fetch(
                "SELECT owner, SUM(balance_minor) AS total FROM checkpoint_balances"
                " WHERE currency = 'XAG' GROUP BY owner"
            )
        owners = {str(r["owner"]): int(r["total"]) for r in rows}
        assert {"operator", "partner:1"} <= set(owners)
        assert sum(owners.values()) == 0

    backend.run(scenario)


def test_incremental_run_in_short_transactions_under_concurrent_traffic(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ranges of 5 entries and one wallet per batch, while the wallets keep moving: every range
    # and every wallet batch is its own transaction, and the result is still exact.
    monkeypatch.setattr(reconcile, "RANGE_BATCH", 5)
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 1)
    ranges: list[tuple[int, int]] = []
    advance = reconcile._advance_range

    async def recorded(
        tx: Any, report: Any, tracker: Any, start: int, end: int, bound: int
    ) -> None:
        ranges.append((start, end))
        await advance(tx, report, tracker, start, end, bound)
        await asyncio.sleep(0.005)  # let the concurrent writers in between the transactions

    monkeypatch.setattr(reconcile, "_advance_range", recorded)

    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 3)
        first = await run(store)
        assert first.ok and first.full
        await traffic(store, 3, 6)
        await traffic(store, 0, 4, token="t2")
        backlog = await max_entry(store)
        writers = [
            asyncio.create_task(traffic(store, 100, 8, token="t2")),
            asyncio.create_task(traffic(store, 200, 8)),
        ]
        report = await run(store)
        await asyncio.gather(*writers)
        assert report.ok and not report.full and report.checkpoint, report.as_json()
        assert report.position >= backlog
        assert report.entries == await one(
            store,
            "SELECT COUNT(*) FROM ledger_entries WHERE id > $1 AND id <= $2",
            first.position,
            report.position,
        )
        # Never more than one range of entries per transaction, and the ranges tile the run.
        assert all(0 < end - start <= 5 for start, end in ranges if end <= backlog)
        assert ranges[0][0] == first.position and ranges[-1][1] == report.position
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert report.players == 2
        # What the chunks checkpointed is what a proof from scratch finds, and the next run
        # (the writers' last entries) agrees too.
        again = await run(store)
        assert again.ok and again.since_position == report.position
        full = await run(store, full=True)
        assert full.ok, full.as_json()

    backend.run(scenario)


def test_incremental_run_finds_a_drifted_wallet_in_the_middle_of_a_backlog(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "RANGE_BATCH", 4)
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 1)

    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 2)
        assert (await run(store)).ok
        await traffic(store, 2, 3, token="t2")
        # p2's cached balance drifts while its entries are in the middle of the backlog.
        await execute(store, "UPDATE players SET held_minor = held_minor + 1 WHERE id = 'p2'")
        await traffic(store, 5, 3)
        found = await run(store)
        assert not found.ok and not found.checkpoint
        assert {m["id"] for m in found.balance_mismatches} == {"p2"}
        assert {m["id"] for m in found.hold_mismatches} == {"p2"}
        assert found.unbalanced == []

    backend.run(scenario)


def test_a_write_right_after_the_position_is_outside_the_wallet_batch_snapshot(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race the exported snapshot closes: a wallet writer commits after the position is read
    # and before the batch's first query. The batch must not see it (its balances stop at the
    # position), or it would report a difference that is not there. SQLite has one writer: the
    # batch's own transaction excludes the race.
    if backend.name != "postgres":
        return
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 1)
    imported = reconcile._import_quiet_snapshot
    writes: list[int] = []

    async def write_in_between(db: Any, target: Any) -> int:
        position = await imported(db, target)
        writes.append(position)
        await traffic(db, 300 + len(writes), 1)  # p1, committed on another connection
        return position

    monkeypatch.setattr(reconcile, "_import_quiet_snapshot", write_in_between)

    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 2)
        assert (await run(store)).ok
        await traffic(store, 2, 2)
        await traffic(store, 0, 2, token="t2")
        report = await run(store)
        assert writes, "no wallet batch ran"
        assert report.ok, report.as_json()
        assert report.position == writes[-1] < await max_entry(store)

    backend.run(scenario)


# -- the months a range reads (PostgreSQL's monthly partitions, migration 0011) ------------------

OLD_MS = NOW_MS - 40 * DAY_MS  # another month than NOW_MS


async def _months(store: Any, backend: Backend) -> None:
    """Partitions from OLD_MS's month to NOW_MS's (else both land in the default partition)."""
    if backend.name == "postgres":
        await archive.ensure_partitions_between(store, OLD_MS, NOW_MS)


async def _qw_id(store: Any, mm: str) -> str:
    return str(
        await one(
            store, "SELECT qw_transaction_id FROM transactions WHERE mm_transaction_id = $1", mm
        )
    )


def test_a_hold_of_an_earlier_month_confirmed_now_is_counted_whole(
    backend: Backend, batches: str
) -> None:
    # Its transaction lies outside the recent window the first lookup searches: the second
    # finds it, and its entries of both months are counted.
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await _months(store, backend)
        await add_session(
            store, "t-old", "p1", last_seen_at_ms=OLD_MS, expires_at_ms=OLD_MS + DAY_MS
        )
        await store.begin(begin_call(Kind.WITHDRAWAL, "old-1", 300, token="t-old", now_ms=OLD_MS))
        assert (await run(store)).ok
        await store.confirm(confirm_call(Kind.WITHDRAWAL, "old-1", 300, now_ms=NOW_MS))
        since = await run(store)
        assert since.ok and not since.full and since.checkpoint, since.as_json()
        assert since.entries == 2

        # The confirmed transaction is made to look pending again: it now holds two entries
        # too many, and the run that reads its confirm step must say so.
        old = await _qw_id(store, "old-1")
        await execute(
            store, "DELETE FROM reconcile_checkpoints WHERE position > $1", since.since_position
        )
        await execute(
            store, "UPDATE transactions SET state = 'pending' WHERE mm_transaction_id = 'old-1'"
        )
        found = await run(store)
        assert not found.ok and not found.checkpoint
        listed = {
            (str(m["qw_transaction_id"]), m["state"], int(m["entries"]))
            for m in found.entry_count_mismatches
        }
        assert (old, "pending", 4) in listed

    backend.run(scenario)


def test_an_entry_dated_before_its_transaction_is_listed_not_left_uncounted(
    backend: Backend, batches: str
) -> None:
    # The run counts a transaction's entries from CLOCK_MARGIN_MS before its creation on: a
    # pair of entries of a new transaction dated a month earlier (they cancel out, so no
    # balance or step shows them) must still be found by the range that holds them.
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await _months(store, backend)
        assert (await run(store)).ok
        await store.begin(begin_call(Kind.WITHDRAWAL, "early-1", 300, now_ms=NOW_MS))
        early = await _qw_id(store, "early-1")
        for amount in (1, -1):
            await execute(
                store,
                "INSERT INTO ledger_entries (transaction_id, phase, account, player_id, currency,"
                " amount_minor, created_at_ms) VALUES ($1, 'begin', 'available', 'p1', 'XAG', $2, $3)",
                early,
                amount,
                OLD_MS,
            )
        found = await run(store)
        assert not found.ok and not found.checkpoint
        assert found.unbalanced == [] and found.balance_mismatches == [], found.as_json()
        assert {
            (str(m["qw_transaction_id"]), int(m["entries"])) for m in found.entry_count_mismatches
        } == {(early, 4)}

    backend.run(scenario)


def test_a_range_reads_only_the_months_of_its_transactions(backend: Backend) -> None:
    # PostgreSQL: the entries and transactions of the months before are never read (their
    # partitions' scans run zero times), though those months hold rows. SQLite (one table):
    # the counts are searches of ix_ledger_entries_transaction, not scans of the ledger.
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await _months(store, backend)
        await add_session(
            store, "t-old", "p1", last_seen_at_ms=OLD_MS, expires_at_ms=OLD_MS + DAY_MS
        )
        for i in range(3):
            mm = f"old-{i}"
            await store.begin(begin_call(Kind.WITHDRAWAL, mm, 100, token="t-old", now_ms=OLD_MS))
            await store.confirm(
                confirm_call(Kind.WITHDRAWAL, mm, 100, token="t-old", now_ms=OLD_MS)
            )
        since = await max_entry(store)
        await traffic(store, 0, 3)
        args = (
            since,
            await max_entry(store),
            reconcile.CLOCK_MARGIN_MS,
            reconcile.RECENT_TRANSACTION_MS,
        )
        async with store.transaction() as tx:
            assert await tx.fetch(reconcile._RANGE_ENTRY_COUNTS, *args) == []
            if backend.name == "sqlite":
                plan = " ".join(
                    str(r["detail"])
                    for r in await tx.fetch(
                        "EXPLAIN QUERY PLAN " + reconcile._RANGE_ENTRY_COUNTS, *args
                    )
                )
                assert "ix_ledger_entries_transaction" in plan, plan
                assert "SCAN e" not in plan and "SCAN t" not in plan, plan
                return
            row = await tx.fetchrow(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + reconcile._RANGE_ENTRY_COUNTS, *args
            )
        assert row is not None
        document = next(iter(row.values()))
        plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        old, new = archive.Month.of(OLD_MS).suffix, archive.Month.of(NOW_MS).suffix
        loops: dict[str, int] = {}
        stack = [plan]
        while stack:
            node = stack.pop()
            stack.extend(node.get("Plans", []))
            relation = str(node.get("Relation Name", node.get("Index Name", "")))
            if relation:
                loops[relation] = max(loops.get(relation, 0), int(node.get("Actual Loops", 0)))
        # Six transactions in the range: each lookup runs six times, in the current month only.
        # The old month is read once, by the range's own scan of the entry ids.
        assert loops[f"ledger_entries_{new}"] == loops[f"transactions_{new}"] == 6, loops
        assert loops[f"transactions_{old}"] == 0, loops
        assert loops[f"ledger_entries_{old}"] <= 1, loops

    backend.run(scenario)


class _JitRecorder:
    """A store whose transactions note, before each statement of the reconcile's constants,
    whether JIT compilation is on in that transaction."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.dialect = store.dialect
        self._names = TimedDatabase(store, statement_names(reconcile))
        self.seen: dict[str, set[str]] = {}

    def transaction(self) -> Any:
        owner = self

        class _Tx:
            def __init__(self, tx: Any) -> None:
                self._tx = tx

            async def _note(self, sql: str) -> None:
                name = owner._names.name_of(sql)
                if name.startswith("_"):
                    row = await self._tx.fetchrow("SELECT current_setting('jit') AS jit")
                    owner.seen.setdefault(name, set()).add(str(row["jit"]))

            async def fetch(self, sql: str, *args: object) -> Any:
                await self._note(sql)
                return await self._tx.fetch(sql, *args)

            async def fetchrow(self, sql: str, *args: object) -> Any:
                await self._note(sql)
                return await self._tx.fetchrow(sql, *args)

            async def execute(self, sql: str, *args: object) -> Any:
                await self._note(sql)
                return await self._tx.execute(sql, *args)

        @contextlib.asynccontextmanager
        async def opened() -> Any:
            async with self._store.transaction() as tx:
                yield _Tx(tx)

        return opened()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_runs_batches_are_not_compiled_by_jit(backend: Backend) -> None:
    # On a grown ledger the batches' estimated costs pass jit_above_cost and compiling each
    # took longer than running it (docs/benchmarks.md): every batch statement of both runs
    # runs with jit off, for its own transaction only (SET LOCAL: the pooled connections and
    # every other caller keep the server's setting).
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 3)
        recorder = _JitRecorder(store)
        assert (await run(recorder, full=True)).ok  # writes the checkpoint
        await traffic(store, 3, 3, token="t2")
        assert (await reconcile.incremental(recorder, 1)).ok
        outside = {"_MOVED_WALLETS", "_MOVED_WALLET_COUNT"}  # one cheap index read each
        batches = {name: seen for name, seen in recorder.seen.items() if name not in outside}
        assert {"_RANGE_ENTRY_COUNTS", "_BATCH_WALLETS", "_WALLET_HOLDS"} <= set(batches)
        assert all(seen == {"off"} for seen in batches.values()), recorder.seen
        # Both pooled connections the runs used, held at once.
        async with store.transaction() as one_tx, store.transaction() as other_tx:
            for tx in (one_tx, other_tx):
                row = await tx.fetchrow("SELECT current_setting('jit') AS jit")
                assert row is not None and row["jit"] == "on"

    backend.run(scenario, pool_max=2)
