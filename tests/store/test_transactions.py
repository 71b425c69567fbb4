"""The two-phase state machine (spec §1.4) on both backends, branch by branch.

The expected answers are written out in full (codes, descriptions, extras), so that passing on
both backends means both give the same answers as ``qwallet.store.engine``.
"""

from __future__ import annotations

from typing import Any

import pytest

from qwallet.domain.transactions import Kind
from qwallet.store.port import MoneyResult

from .conftest import Backend
from .world import (
    FUNDS_MINOR,
    NOW_MS,
    OTHER_PARTNER,
    begin_call,
    check_invariants,
    confirm_call,
    count,
    entries_of,
    failure,
    player_row,
    rollback_call,
    standard_world,
    transaction_row,
)

KINDS = [Kind.WITHDRAWAL, Kind.DEPOSIT]
ROLLED_BACK_EARLY = "Transaction was rolled back before this request arrived."
CONFIRM_MISMATCH = "Confirm must carry the amount and currency of the original."
DEFAULT_131 = "Transaction id already used with different data."
DEFAULT_132 = "Transaction already rolled back."
DEFAULT_133 = "Transaction already confirmed."
DEFAULT_130 = "Transaction not found."


def ids(result: MoneyResult) -> dict[str, str]:
    return {
        "mmTransactionId": result.mm_transaction_id,
        "qwTransactionId": result.qw_transaction_id,
    }


def balances(row: dict[str, Any]) -> tuple[int, int, int]:
    return row["available_minor"], row["held_minor"], row["pending_in_minor"]


# -- none → pending ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_begin_opens_a_pending_transaction(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        result = await store.begin(begin_call(kind, "m1", 1_000))
        assert result.mm_transaction_id == "m1"
        assert result.currency == "XAG"
        assert len(result.qw_transaction_id) == 36  # a UUID
        player = await player_row(store, "p1")
        if kind is Kind.WITHDRAWAL:
            assert result.balance_minor == FUNDS_MINOR - 1_000
            assert balances(player) == (FUNDS_MINOR - 1_000, 1_000, 0)
            assert await entries_of(store, result.qw_transaction_id) == [
                ("begin", "available", "p1", None, "XAG", -1_000),
                ("begin", "held", "p1", None, "XAG", 1_000),
            ]
        else:
            # A pending deposit does not increase what the player can spend.
            assert result.balance_minor == FUNDS_MINOR
            assert balances(player) == (FUNDS_MINOR, 0, 1_000)
            assert await entries_of(store, result.qw_transaction_id) == [
                ("begin", "partner", None, 1, "XAG", -1_000),
                ("begin", "pending_in", "p1", None, "XAG", 1_000),
            ]
        row = await transaction_row(store, "m1", kind)
        assert row is not None
        assert row["qw_transaction_id"] == result.qw_transaction_id
        assert row["state"] == "pending"
        assert row["player_id"] == "p1"
        assert row["amount_minor"] == 1_000
        assert row["description"] == "Test Shopping."
        assert row["begin_balance_minor"] == result.balance_minor
        assert row["final_balance_minor"] is None
        assert row["created_at_ms"] == row["updated_at_ms"] == NOW_MS
        await check_invariants(store)

    backend.run(scenario)


def test_withdrawal_and_deposit_ids_are_separate(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        withdrawal = await store.begin(begin_call(Kind.WITHDRAWAL, "same", 1_000))
        deposit = await store.begin(begin_call(Kind.DEPOSIT, "same", 2_000))
        assert withdrawal.qw_transaction_id != deposit.qw_transaction_id
        assert (await store.confirm(confirm_call(Kind.DEPOSIT, "same", 2_000))).balance_minor == (
            FUNDS_MINOR - 1_000 + 2_000
        )
        await check_invariants(store)

    backend.run(scenario)


def test_ids_are_per_partner(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(mm="shared"))
        second = await store.begin(
            begin_call(mm="shared", token="t1-other", partner_id=OTHER_PARTNER)
        )
        assert first.qw_transaction_id != second.qw_transaction_id
        assert second.balance_minor == FUNDS_MINOR - 2_000
        await check_invariants(store)

    backend.run(scenario)


# -- withdraw / deposit on an existing id --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_begin_replays_a_pending_transaction(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        # Money moves in between: the replay still answers the balance of the first answer.
        await store.begin(begin_call(kind, "m2", 5_000))
        before = await player_row(store, "p1")
        entries = await count(store, "SELECT COUNT(*) FROM ledger_entries")
        replay = await store.begin(begin_call(kind, "m1", 1_000, description="other text"))
        assert replay == first
        assert await player_row(store, "p1") == before
        assert await count(store, "SELECT COUNT(*) FROM ledger_entries") == entries
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_begin_replays_a_confirmed_transaction(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        confirmed = await store.confirm(confirm_call(kind, "m1", 1_000))
        assert confirmed.qw_transaction_id == first.qw_transaction_id
        replay = await store.begin(begin_call(kind, "m1", 1_000))
        assert replay == first
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_begin_after_its_rollback_is_132(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        await store.rollback(rollback_call(kind, "m1"))
        before = await player_row(store, "p1")
        assert await failure(store.begin(begin_call(kind, "m1", 1_000))) == (
            132,
            ROLLED_BACK_EARLY,
            ids(first),
        )
        assert await player_row(store, "p1") == before
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_late_original_after_a_blocking_rollback_is_132(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        blocker = await store.rollback(rollback_call(kind, "m1"))
        assert blocker.balance_minor == FUNDS_MINOR
        assert await failure(store.begin(begin_call(kind, "m1", 1_000))) == (
            132,
            ROLLED_BACK_EARLY,
            ids(blocker),
        )
        assert balances(await player_row(store, "p1")) == (FUNDS_MINOR, 0, 0)
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_begin_with_changed_amount_is_131(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        before = await player_row(store, "p1")
        assert await failure(store.begin(begin_call(kind, "m1", 1_001))) == (
            131,
            DEFAULT_131,
            ids(first),
        )
        assert await player_row(store, "p1") == before
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_begin_with_changed_player_is_131(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        assert await failure(store.begin(begin_call(kind, "m1", 1_000, token="t2"))) == (
            131,
            DEFAULT_131,
            ids(first),
        )
        assert balances(await player_row(store, "p2")) == (FUNDS_MINOR, 0, 0)
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_begin_with_changed_currency_is_131_or_120(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        # The currency is checked against the wallet first: the same player cannot change it.
        assert await failure(store.begin(begin_call(kind, "m1", 1_000, currency="EUR"))) == (
            120,
            "Currency does not match the player's wallet.",
            {},
        )
        # A player with another wallet currency reusing the id: different data.
        assert await failure(
            store.begin(begin_call(kind, "m1", 1_000, token="t3", currency="EUR"))
        ) == (131, DEFAULT_131, ids(first))
        await check_invariants(store)

    backend.run(scenario)


# -- confirm -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_confirm_without_original_is_130(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        assert await failure(store.confirm(confirm_call(kind, "nope"))) == (130, DEFAULT_130, {})
        assert await transaction_row(store, "nope", kind) is None

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_confirm_applies_then_replays(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        confirmed = await store.confirm(confirm_call(kind, "m1", 1_000, now_ms=NOW_MS + 5))
        assert confirmed.qw_transaction_id == first.qw_transaction_id
        player = await player_row(store, "p1")
        if kind is Kind.WITHDRAWAL:
            assert confirmed.balance_minor == FUNDS_MINOR - 1_000
            assert balances(player) == (FUNDS_MINOR - 1_000, 0, 0)
            expected = [
                ("confirm", "held", "p1", None, "XAG", -1_000),
                ("confirm", "partner", None, 1, "XAG", 1_000),
            ]
        else:
            assert confirmed.balance_minor == FUNDS_MINOR + 1_000
            assert balances(player) == (FUNDS_MINOR + 1_000, 0, 0)
            expected = [
                ("confirm", "pending_in", "p1", None, "XAG", -1_000),
                ("confirm", "available", "p1", None, "XAG", 1_000),
            ]
        assert (await entries_of(store, first.qw_transaction_id))[2:] == expected
        row = await transaction_row(store, "m1", kind)
        assert row is not None
        assert row["state"] == "confirmed"
        assert row["final_balance_minor"] == confirmed.balance_minor
        assert row["updated_at_ms"] == NOW_MS + 5

        # Money moves afterwards; the replay answers the recorded balance and moves nothing.
        await store.begin(begin_call(kind, "m2", 3_000))
        before = await player_row(store, "p1")
        assert await store.confirm(confirm_call(kind, "m1", 1_000)) == confirmed
        assert await player_row(store, "p1") == before
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_confirm_after_rollback_is_132(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        await store.rollback(rollback_call(kind, "m1"))
        assert await failure(store.confirm(confirm_call(kind, "m1", 1_000))) == (
            132,
            DEFAULT_132,
            ids(first),
        )
        blocker = await store.rollback(rollback_call(kind, "m2"))
        assert await failure(store.confirm(confirm_call(kind, "m2", 1_000))) == (
            132,
            DEFAULT_132,
            ids(blocker),
        )
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_confirm_with_changed_amount_or_currency_is_131(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        expected = (131, CONFIRM_MISMATCH, ids(first))
        assert await failure(store.confirm(confirm_call(kind, "m1", 999))) == expected
        assert await failure(store.confirm(confirm_call(kind, "m1", 1_000, currency="EUR"))) == (
            expected
        )
        # Also once confirmed: a changed confirm is never a replay.
        await store.confirm(confirm_call(kind, "m1", 1_000))
        assert await failure(store.confirm(confirm_call(kind, "m1", 2_000))) == expected
        row = await transaction_row(store, "m1", kind)
        assert row is not None and row["state"] == "confirmed"
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_confirm_of_another_players_transaction_is_130(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await store.begin(begin_call(kind, "m1", 1_000))
        # Another player of the same partner: its existence is not revealed.
        assert await failure(store.confirm(confirm_call(kind, "m1", 1_000, token="t2"))) == (
            130,
            DEFAULT_130,
            {},
        )
        # The same player through another partner: that partner has no such id.
        assert await failure(
            store.confirm(
                confirm_call(kind, "m1", 1_000, token="t1-other", partner_id=OTHER_PARTNER)
            )
        ) == (130, DEFAULT_130, {})
        row = await transaction_row(store, "m1", kind)
        assert row is not None and row["state"] == "pending"
        await check_invariants(store)

    backend.run(scenario)


# -- rollback ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_rollback_without_original_blocks_it(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        blocker = await store.rollback(rollback_call(kind, "m1", now_ms=NOW_MS + 7))
        assert blocker.mm_transaction_id == "m1"
        assert blocker.currency == "XAG"
        assert blocker.balance_minor == FUNDS_MINOR
        row = await transaction_row(store, "m1", kind)
        assert row is not None
        assert row["qw_transaction_id"] == blocker.qw_transaction_id
        assert row["state"] == "rolled_back"
        assert row["amount_minor"] is None
        assert row["begin_balance_minor"] is None
        assert row["final_balance_minor"] == FUNDS_MINOR
        assert row["rollback_reason"] == "Withdraw request failed."
        assert row["description"] is None
        assert await entries_of(store, blocker.qw_transaction_id) == []
        # Repeated: the same answer, even after the balance changed.
        await store.begin(begin_call(kind, "m2", 500))
        assert await store.rollback(rollback_call(kind, "m1")) == blocker
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_rollback_applies_then_replays(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        rolled = await store.rollback(rollback_call(kind, "m1", reason=None))
        assert rolled.qw_transaction_id == first.qw_transaction_id
        assert rolled.balance_minor == FUNDS_MINOR
        assert balances(await player_row(store, "p1")) == (FUNDS_MINOR, 0, 0)
        if kind is Kind.WITHDRAWAL:
            expected = [
                ("rollback", "held", "p1", None, "XAG", -1_000),
                ("rollback", "available", "p1", None, "XAG", 1_000),
            ]
        else:
            expected = [
                ("rollback", "pending_in", "p1", None, "XAG", -1_000),
                ("rollback", "partner", None, 1, "XAG", 1_000),
            ]
        assert (await entries_of(store, first.qw_transaction_id))[2:] == expected
        row = await transaction_row(store, "m1", kind)
        assert row is not None
        assert row["state"] == "rolled_back"
        assert row["rollback_reason"] is None
        assert row["final_balance_minor"] == FUNDS_MINOR
        await store.begin(begin_call(kind, "m2", 2_000))
        assert await store.rollback(rollback_call(kind, "m1")) == rolled
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_rollback_after_confirm_is_133(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        first = await store.begin(begin_call(kind, "m1", 1_000))
        await store.confirm(confirm_call(kind, "m1", 1_000))
        before = await player_row(store, "p1")
        assert await failure(store.rollback(rollback_call(kind, "m1"))) == (
            133,
            DEFAULT_133,
            ids(first),
        )
        assert await player_row(store, "p1") == before
        await check_invariants(store)

    backend.run(scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_rollback_of_another_players_transaction_is_130(backend: Backend, kind: Kind) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await store.begin(begin_call(kind, "m1", 1_000))
        await store.rollback(rollback_call(kind, "m2"))
        for mm in ("m1", "m2"):
            assert await failure(store.rollback(rollback_call(kind, mm, token="t2"))) == (
                130,
                DEFAULT_130,
                {},
            )
        row = await transaction_row(store, "m1", kind)
        assert row is not None and row["state"] == "pending"
        await check_invariants(store)

    backend.run(scenario)
