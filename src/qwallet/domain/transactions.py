"""The two-phase transaction state machine (spec §1.4), as pure decisions.

A money call finds at most one existing record for its (partner, kind, mmTransactionId) and the
functions here decide what happens, without touching storage:

=================  ==========  ===========  ===========  ===========
call \\ state       none        pending      confirmed    rolled back
=================  ==========  ===========  ===========  ===========
withdraw/deposit   APPLY       REPLAY       REPLAY       132
confirm            130         APPLY        REPLAY       132
rollback           BLOCK       APPLY        133          REPLAY
=================  ==========  ===========  ===========  ===========

``BLOCK`` records a rollback that arrived before its original, so the late original gets 132.
The PostgreSQL adapter implements the same table in PL/pgSQL (one round trip per call); the shared
test suite holds both to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from qwallet.domain.errors import ErrorCode, WalletError


class Kind(StrEnum):
    WITHDRAWAL = "withdrawal"
    DEPOSIT = "deposit"


class State(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    ROLLED_BACK = "rolled_back"


class Phase(StrEnum):
    BEGIN = "begin"
    CONFIRM = "confirm"
    ROLLBACK = "rollback"


class Action(Enum):
    APPLY = "apply"
    REPLAY = "replay"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """What storage keeps of one transaction; the replay answers come from it."""

    qw_transaction_id: str
    partner_id: int
    kind: Kind
    mm_transaction_id: str
    player_id: str
    amount_minor: int | None  # None for a rollback that arrived before its original
    currency: str
    state: State
    begin_balance_minor: int | None
    final_balance_minor: int | None


def _ids(record: TransactionRecord) -> dict[str, str]:
    return {
        "mmTransactionId": record.mm_transaction_id,
        "qwTransactionId": record.qw_transaction_id,
    }


def decide_begin(
    record: TransactionRecord | None, *, player_id: str, amount_minor: int, currency: str
) -> Action:
    """withdraw / deposit: a new id applies, a repeat with the same data replays."""
    if record is None:
        return Action.APPLY
    if record.state is State.ROLLED_BACK:
        raise WalletError(
            ErrorCode.TRANSACTION_ROLLED_BACK,
            "Transaction was rolled back before this request arrived.",
            **_ids(record),
        )
    if (
        record.player_id != player_id
        or record.amount_minor != amount_minor
        or record.currency != currency
    ):
        raise WalletError(ErrorCode.TRANSACTION_DATA_MISMATCH, **_ids(record))
    return Action.REPLAY


def decide_confirm(
    record: TransactionRecord | None, *, player_id: str, amount_minor: int, currency: str
) -> Action:
    """confirm: only a pending transaction of this player, with the original's amount."""
    # Another player's transaction is reported as missing: its existence is not revealed.
    if record is None or record.player_id != player_id:
        raise WalletError(ErrorCode.TRANSACTION_NOT_FOUND)
    if record.state is State.ROLLED_BACK:
        raise WalletError(ErrorCode.TRANSACTION_ROLLED_BACK, **_ids(record))
    if record.amount_minor != amount_minor or record.currency != currency:
        raise WalletError(
            ErrorCode.TRANSACTION_DATA_MISMATCH,
            "Confirm must carry the amount and currency of the original.",
            **_ids(record),
        )
    return Action.APPLY if record.state is State.PENDING else Action.REPLAY


def decide_rollback(record: TransactionRecord | None, *, player_id: str) -> Action:
    """rollback: cancels a pending transaction, or blocks an original that has not arrived."""
    if record is None:
        return Action.BLOCK
    if record.player_id != player_id:
        raise WalletError(ErrorCode.TRANSACTION_NOT_FOUND)
    if record.state is State.CONFIRMED:
        raise WalletError(ErrorCode.TRANSACTION_CONFIRMED, **_ids(record))
    return Action.APPLY if record.state is State.PENDING else Action.REPLAY
