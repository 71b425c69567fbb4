"""The growth benchmark's per-statement times of a reconcile run (``bench/statement_times.py``),
on both databases: every statement of the run is counted under its constant's name."""

from __future__ import annotations

import time
from typing import Any

import pytest

from qwallet.bench.statement_times import INLINE_NAME_CHARS, TimedDatabase, statement_names
from qwallet.service import reconcile
from tests.store.conftest import Backend
from tests.store.test_reconcile_checkpoints import run, traffic
from tests.store.world import standard_world


def test_an_incremental_run_is_timed_statement_by_statement(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "RANGE_BATCH", 4)
    monkeypatch.setattr(reconcile, "WALLET_BATCH", 1)

    async def scenario(store: Any) -> None:
        await standard_world(store)
        await traffic(store, 0, 2)
        assert (await run(store)).ok
        await traffic(store, 2, 3)
        await traffic(store, 0, 2, token="t2")
        timed = TimedDatabase(store, statement_names(reconcile))
        started = time.perf_counter()
        report = await reconcile.incremental(timed, 1)
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert report.ok and report.checkpoint and not report.full, report.as_json()

        times = {t.name: t for t in timed.by_time()}
        # One of each per entry range (at most 4 entries each); the hold check (a constant
        # filled in with the batch's placeholders) once per wallet batch, under its own name.
        ranges = times["_UNBALANCED_STEPS"].calls
        assert ranges >= -(-report.entries // 4), times
        assert times["_RANGE_ENTRY_COUNTS"].calls == times["_ADVANCE"].calls == ranges
        assert times["_WALLET_HOLDS"].calls >= report.players == 2
        assert times["_PENDING_SINCE"].calls == 1
        # The statements written inline are named by their first words.
        inline = [t for t in times.values() if not t.name.startswith("_")]
        assert inline and all(len(t.name) <= INLINE_NAME_CHARS for t in inline)
        assert any(t.name.startswith("SELECT COUNT(*) AS entries") for t in inline), inline
        if backend.name == "postgres":  # a snapshot imported per wallet batch: one row
            snapshots = times["SET TRANSACTION SNAPSHOT '…'"].calls
            assert times["_WALLET_HOLDS"].calls <= snapshots <= times["_WALLET_HOLDS"].calls + 1
        assert 0 < sum(t.ms for t in times.values()) <= elapsed_ms
        assert [t.ms for t in timed.by_time()] == sorted(
            (t.ms for t in times.values()), reverse=True
        )

    backend.run(scenario)


class _NoDatabase:
    dialect = "none"


def test_only_statement_constants_are_named() -> None:
    names = statement_names(reconcile)
    assert set(names.values()) >= {"_RANGE_ENTRY_COUNTS", "_WALLET_HOLDS", "_BATCH_WALLETS"}
    # Fragments of statements are not statements.
    assert not {"_OWNER", "_EXPECTED_ENTRIES", "_WALLET_OWNER"} & set(names.values())
    timed = TimedDatabase(_NoDatabase(), names)  # type: ignore[arg-type]
    assert timed.name_of(reconcile._WALLET_HOLDS.format(marks="$1, $2")) == "_WALLET_HOLDS"
    # One row for a statement whatever its literals (each snapshot id is another).
    assert (
        timed.name_of("SET TRANSACTION SNAPSHOT '00000023-00002BFB-1'")
        == timed.name_of("SET TRANSACTION SNAPSHOT '00000003-0000001A-1'")
        == "SET TRANSACTION SNAPSHOT '…'"
    )
    assert timed.name_of("SELECT 'it''s', 1") == "SELECT '…', 1"
