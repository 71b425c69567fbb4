"""The dashboard's figures on both databases: held amounts from the wallets, and counts of the
pending backlog that stop at the cap ("10000+") instead of reading the whole backlog."""

from __future__ import annotations

from typing import Any

import pytest

from qwallet.admin import queries
from qwallet.domain.transactions import Kind
from qwallet.service import capped
from tests.store.conftest import Backend
from tests.store.world import NOW_MS, begin_call, confirm_call, standard_world

WITHDRAWALS = 30
DEPOSITS = 4
CAP = 12


def test_dashboard_counts_the_backlog_up_to_the_cap(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capped, "COUNT_CAP", CAP)

    async def scenario(store: Any) -> None:
        await standard_world(store)
        for i in range(WITHDRAWALS):
            # One a millisecond; every third confirmed, the rest stay pending (holds).
            await store.begin(begin_call(Kind.WITHDRAWAL, f"w{i}", 10, now_ms=NOW_MS + i))
            if i % 3 == 0:
                await store.confirm(confirm_call(Kind.WITHDRAWAL, f"w{i}", 10, now_ms=NOW_MS + i))
        for i in range(DEPOSITS):
            await store.begin(begin_call(Kind.DEPOSIT, f"d{i}", 10, now_ms=NOW_MS + i))
        pending = [i for i in range(WITHDRAWALS) if i % 3]
        assert len(pending) > CAP

        # A window ending at NOW_MS + 9: the pending withdrawals 1, 2, 4, 5, 7, 8 and the
        # deposits 0..3 are past it.
        data = await queries.dashboard(store, NOW_MS + 9)
        assert data["pending"] == {
            "holds": CAP + 1,  # stopped: 20 are pending
            "overdue_holds": len([i for i in pending if i <= 9]),
            "overdue_deposits": DEPOSITS,
        }
        assert capped.shown(data["pending"]["holds"]) == f"{CAP}+"
        assert capped.shown(data["pending"]["overdue_holds"]) == "6"
        # What the holds hold comes from the wallets, exactly, whatever the cap.
        held = {str(row["currency"]): int(row["held"]) for row in data["balances"]}
        assert held == {"EUR": 0, "XAG": 10 * len(pending)}

        # Above the backlog the counts are exact.
        monkeypatch.setattr(capped, "COUNT_CAP", 1_000)
        data = await queries.dashboard(store, NOW_MS + 9)
        assert data["pending"]["holds"] == len(pending)

        # The console's filter by state reads the same rows, with and without a kind.
        rows = await queries.transactions(store, queries.TransactionFilter(state="pending"))
        assert len(rows) == len(pending) + DEPOSITS
        rows = await queries.transactions(
            store, queries.TransactionFilter(state="pending", kind="deposit")
        )
        assert sorted(str(r["mm_transaction_id"]) for r in rows) == [f"d{i}" for i in range(4)]

    backend.run(scenario)
