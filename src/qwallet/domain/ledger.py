"""Double-entry movements: which accounts each step of a transaction debits and credits.

Every step is a set of entries that sums to zero. A player's wallet has three accounts:
``available`` (spendable), ``held`` (withdrawals awaiting confirm or rollback) and ``pending_in``
(deposits awaiting confirm). The partner account is the other side of every game movement, the
operator account the other side of manual adjustments. Partner and operator balances are derived
from the entries, never kept in a shared row that every call would have to lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from qwallet.domain.transactions import Kind, Phase


class Account(StrEnum):
    AVAILABLE = "available"
    HELD = "held"
    PENDING_IN = "pending_in"
    PARTNER = "partner"
    OPERATOR = "operator"


Movement = tuple[tuple[Account, int], ...]

_LEGS: dict[tuple[Kind, Phase], tuple[Account, Account]] = {
    # (from, to): the amount leaves the first account and arrives in the second.
    (Kind.WITHDRAWAL, Phase.BEGIN): (Account.AVAILABLE, Account.HELD),
    (Kind.WITHDRAWAL, Phase.CONFIRM): (Account.HELD, Account.PARTNER),
    (Kind.WITHDRAWAL, Phase.ROLLBACK): (Account.HELD, Account.AVAILABLE),
    (Kind.DEPOSIT, Phase.BEGIN): (Account.PARTNER, Account.PENDING_IN),
    (Kind.DEPOSIT, Phase.CONFIRM): (Account.PENDING_IN, Account.AVAILABLE),
    (Kind.DEPOSIT, Phase.ROLLBACK): (Account.PENDING_IN, Account.PARTNER),
}


def movement(kind: Kind, phase: Phase, amount_minor: int) -> Movement:
    """The entries for one step; they always sum to zero."""
    assert amount_minor > 0, amount_minor
    source, target = _LEGS[(kind, phase)]
    return ((source, -amount_minor), (target, amount_minor))


def adjustment(amount_minor: int) -> Movement:
    """An operator adjustment: credit (positive) or debit (negative) the available account."""
    assert amount_minor != 0
    return ((Account.OPERATOR, -amount_minor), (Account.AVAILABLE, amount_minor))


@dataclass(frozen=True, slots=True)
class WalletBalances:
    """The cached balances of one wallet; storage proves them against the entries."""

    available_minor: int
    held_minor: int
    pending_in_minor: int

    def apply(self, entries: Movement) -> WalletBalances:
        available, held, pending_in = self.available_minor, self.held_minor, self.pending_in_minor
        for account, delta in entries:
            if account is Account.AVAILABLE:
                available += delta
            elif account is Account.HELD:
                held += delta
            elif account is Account.PENDING_IN:
                pending_in += delta
        result = WalletBalances(available, held, pending_in)
        assert result.is_valid(), result
        return result

    def is_valid(self) -> bool:
        return self.available_minor >= 0 and self.held_minor >= 0 and self.pending_in_minor >= 0
