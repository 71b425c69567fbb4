"""The use cases against the in-memory fake: fast checks of the rules with no database."""

from __future__ import annotations

import asyncio

import pytest

from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.domain.sessions import SessionRecord
from qwallet.domain.transactions import Kind
from qwallet.store.memory import MemoryStore
from qwallet.store.port import BeginCall, ConfirmCall, RollbackCall

NOW = 1_767_225_600_000
MAX_BALANCE = 10**12


@pytest.fixture
def store() -> MemoryStore:
    memory = MemoryStore()
    memory.add_player("p1", "XAG", 10_000, daily_withdraw_limit_minor=50_000)
    memory.add_player("p2", "XAG", 10_000)
    for token, player in (("t1", "p1"), ("t2", "p2")):
        memory.add_session(SessionRecord(token, player, 1, NOW, 1_800_000, NOW + 86_400_000, None))
    return memory


def begin(kind: Kind, mm: str, amount: int, token: str = "t1", now: int = NOW) -> BeginCall:
    return BeginCall(1, kind, token, mm, amount, "XAG", None, MAX_BALANCE, now)


def code(coroutine: object) -> int:
    try:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    except WalletError as error:
        return int(error.code)
    return 0


def test_withdraw_confirm_and_replay(store: MemoryStore) -> None:
    first = asyncio.run(store.begin(begin(Kind.WITHDRAWAL, "a", 3_000)))
    assert first.balance_minor == 7_000
    assert asyncio.run(store.begin(begin(Kind.WITHDRAWAL, "a", 3_000))) == first
    confirm = ConfirmCall(1, Kind.WITHDRAWAL, "t1", "a", 3_000, "XAG", NOW)
    done = asyncio.run(store.confirm(confirm))
    assert done.qw_transaction_id == first.qw_transaction_id
    assert sum(e.amount_minor for e in store.state.entries) == 0
    player = store.state.players["p1"].balances
    assert (player.available_minor, player.held_minor) == (7_000, 0)


def test_failed_call_changes_nothing(store: MemoryStore) -> None:
    before = store.state
    assert code(store.begin(begin(Kind.WITHDRAWAL, "big", 10_001))) == 121
    assert store.state is before and not store.state.entries


def test_rollback_before_original_blocks_it(store: MemoryStore) -> None:
    rollback = RollbackCall(1, Kind.WITHDRAWAL, "t1", "late", "timeout", NOW)
    blocked = asyncio.run(store.rollback(rollback))
    assert blocked.balance_minor == 10_000
    assert code(store.begin(begin(Kind.WITHDRAWAL, "late", 100))) == 132
    assert store.state.players["p1"].balances.available_minor == 10_000


def test_session_rules(store: MemoryStore) -> None:
    later = NOW + 31 * 60_000
    assert code(store.begin(begin(Kind.WITHDRAWAL, "x", 1, now=later))) == 111
    assert code(store.get_balance(2, "t1", NOW)) == 110  # another partner
    assert code(store.get_balance(1, "nope", NOW)) == 110


def test_daily_limit_resets_next_day(store: MemoryStore) -> None:
    asyncio.run(store.begin(begin(Kind.DEPOSIT, "dep", 90_000)))
    asyncio.run(store.confirm(ConfirmCall(1, Kind.DEPOSIT, "t1", "dep", 90_000, "XAG", NOW)))
    assert code(store.begin(begin(Kind.WITHDRAWAL, "w1", 50_000))) == 0
    assert code(store.begin(begin(Kind.WITHDRAWAL, "w2", 1))) == ErrorCode.LIMIT_EXCEEDED
    # a fresh session the next day
    tomorrow = NOW + 86_400_000
    store.add_session(SessionRecord("t3", "p1", 1, tomorrow, 1_800_000, tomorrow + 1000, None))
    assert code(store.begin(begin(Kind.WITHDRAWAL, "w3", 1, token="t3", now=tomorrow))) == 0
