"""The transaction state machine as a table, and the ledger movements it implies."""

from __future__ import annotations

import pytest

from qwallet.domain import ledger
from qwallet.domain.errors import WalletError
from qwallet.domain.ledger import Account, WalletBalances
from qwallet.domain.transactions import (
    Action,
    Kind,
    Phase,
    State,
    TransactionRecord,
    decide_begin,
    decide_confirm,
    decide_rollback,
)


def record(state: State, amount: int | None = 100, player: str = "p1") -> TransactionRecord:
    return TransactionRecord("qw", 1, Kind.WITHDRAWAL, "mm", player, amount, "XAG", state, 0, 0)


SAME = {"player_id": "p1", "amount_minor": 100, "currency": "XAG"}


def outcome(decide: object, *args: object, **kwargs: object) -> Action | int:
    try:
        return decide(*args, **kwargs)  # type: ignore[operator, no-any-return]
    except WalletError as error:
        return int(error.code)


@pytest.mark.parametrize(
    "state, begin, confirm, rollback",
    [
        (None, Action.APPLY, 130, Action.BLOCK),
        (State.PENDING, Action.REPLAY, Action.APPLY, Action.APPLY),
        (State.CONFIRMED, Action.REPLAY, Action.REPLAY, 133),
        (State.ROLLED_BACK, 132, 132, Action.REPLAY),
    ],
)
def test_the_table(state: State | None, begin: object, confirm: object, rollback: object) -> None:
    existing = None if state is None else record(state)
    assert outcome(decide_begin, existing, **SAME) == begin
    assert outcome(decide_confirm, existing, **SAME) == confirm
    assert outcome(decide_rollback, existing, player_id="p1") == rollback


def test_changed_data_is_131() -> None:
    pending = record(State.PENDING)
    for change in ({"amount_minor": 101}, {"currency": "EUR"}, {"player_id": "p2"}):
        data = {**SAME, **change}
        assert outcome(decide_begin, pending, **data) == 131
    assert outcome(decide_confirm, pending, **{**SAME, "amount_minor": 1}) == 131


def test_another_players_transaction_is_not_found() -> None:
    for state in State:
        assert outcome(decide_confirm, record(state), **{**SAME, "player_id": "p2"}) == 130
        assert outcome(decide_rollback, record(state), player_id="p2") == 130


def test_blocker_refuses_late_original_even_with_any_amount() -> None:
    blocker = record(State.ROLLED_BACK, amount=None)
    assert outcome(decide_begin, blocker, **SAME) == 132
    assert outcome(decide_confirm, blocker, **SAME) == 132


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("phase", list(Phase))
def test_every_movement_sums_to_zero(kind: Kind, phase: Phase) -> None:
    entries = ledger.movement(kind, phase, 250)
    assert sum(delta for _, delta in entries) == 0 and len(entries) == 2


def test_withdraw_then_confirm_or_rollback_balances() -> None:
    start = WalletBalances(1000, 0, 0)
    held = start.apply(ledger.movement(Kind.WITHDRAWAL, Phase.BEGIN, 300))
    assert held == WalletBalances(700, 300, 0)
    assert held.apply(ledger.movement(Kind.WITHDRAWAL, Phase.CONFIRM, 300)) == WalletBalances(
        700, 0, 0
    )
    assert held.apply(ledger.movement(Kind.WITHDRAWAL, Phase.ROLLBACK, 300)) == start
    pending = start.apply(ledger.movement(Kind.DEPOSIT, Phase.BEGIN, 50))
    assert pending == WalletBalances(1000, 0, 50)  # not available until confirmed
    assert pending.apply(ledger.movement(Kind.DEPOSIT, Phase.CONFIRM, 50)) == WalletBalances(
        1050, 0, 0
    )


def test_balances_never_negative() -> None:
    with pytest.raises(AssertionError):
        WalletBalances(10, 0, 0).apply(((Account.AVAILABLE, -11), (Account.HELD, 11)))
