"""The rules of the kit's store, apart from any database: what each ``KitStore`` method decides.

Pure functions of the rows a method read (no I/O, no clock): the SQL adapter
(``_sql_store.py``) reads, asks these, and writes what they decided, so a rule and its error
text are written once whichever database runs them. ``partner-kit/tests/test_store_rules.py``
holds the adapters to that: no decision and no ``FlowError`` outside this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qwallet_partner._exceptions import FlowError
from qwallet_partner._store import EntryState, Kind, Operation, PaymentOrder, TransactionState

__all__ = [
    "OUTCOME_MAX_CHARS",
    "UNDECIDED_BATCH",
    "DecisionVerdict",
    "FinishedAttempt",
    "PaymentVerdict",
    "StoredPayment",
    "already_exists",
    "decide",
    "decided_state",
    "due_at",
    "finish_attempt",
    "lease_until",
    "payment_claim",
]

OUTCOME_MAX_CHARS = 1000
"""An attempt's outcome (and an entry's ``last_error``) is kept to this many characters: it is
an exception's text, and a platform answering with a huge body must not grow the log."""

UNDECIDED_BATCH = 1000
"""``undecided_before`` returns at most this many, oldest first; recovery runs again a minute
later for the rest."""

DecisionVerdict = Literal["record", "replay"]
"""``record``: write the decision and its outbox entry; ``replay``: the same decision is already
recorded, return its entry."""

PaymentVerdict = Literal["conflict", "delivered", "busy", "take_over"]
"""For a cpOrderId already claimed: ``take_over`` means its claimant's lease ran out (it died
mid-delivery), so this request claims it; the others are ``ClaimResult``'s."""

_FINAL: dict[Operation, TransactionState] = {"confirm": "confirmed", "rollback": "rolled_back"}


def already_exists(kind: Kind, mm_transaction_id: str) -> FlowError:
    """``start_transaction`` with an id already used (by a withdrawal, or a deposit, of that id)."""
    return FlowError(f"{kind} {mm_transaction_id!r} already exists")


def decided_state(operation: Operation) -> TransactionState:
    return _FINAL[operation]


def decide(
    kind: Kind, mm_transaction_id: str, operation: Operation, state: TransactionState | None
) -> DecisionVerdict:
    """A decision is final: the same one again replays, the opposite one is refused.

    ``state`` is the transaction's current state, None if there is no such transaction.
    """
    if state is None:
        raise FlowError(f"no {kind} {mm_transaction_id!r} to {operation}")
    decided = decided_state(operation)
    if state not in _FINAL.values():
        return "record"
    if state != decided:
        raise FlowError(f"{kind} {mm_transaction_id!r} is already {state}; it cannot be {decided}")
    return "replay"


def due_at(now: float, not_before: float | None) -> float:
    """A new entry is due now, or when the platform asked (``Retry-After``) if that is later."""
    return max(now, not_before or now)


def lease_until(now: float, lease_s: float) -> float:
    """A claimed entry (or payment) is not handed out again before this; after it, a claimant
    that died mid-attempt is replaced."""
    return now + lease_s


@dataclass(frozen=True, slots=True)
class FinishedAttempt:
    """What ``finish_attempt`` writes: the attempt log's outcome and the entry's new fields."""

    outcome: str
    state: EntryState
    next_attempt_at: float | None  # None keeps the entry's (a final state is never due)
    last_error: str | None
    finished_at: float | None


def finish_attempt(
    now: float, outcome: str, state: EntryState, next_attempt_at: float | None
) -> FinishedAttempt:
    # Only an entry that stays due has a next attempt: the outbox decides, this holds it to it.
    assert (state == "due") == (next_attempt_at is not None), (state, next_attempt_at)
    kept = outcome[:OUTCOME_MAX_CHARS]
    return FinishedAttempt(
        outcome=kept,
        state=state,
        next_attempt_at=next_attempt_at,
        last_error=None if state == "delivered" else kept,
        finished_at=None if state == "due" else now,
    )


@dataclass(frozen=True, slots=True)
class StoredPayment:
    """The row of a cpOrderId the receiver has seen before."""

    fingerprint: str
    state: Literal["delivering", "delivered"]
    claimed_until: float


def payment_claim(order: PaymentOrder, stored: StoredPayment | None, now: float) -> PaymentVerdict:
    """A callback for a cpOrderId that could not be newly recorded (it is already there).

    ``stored`` is None when its claim was released (a failed delivery) between the two steps of
    the claim: the platform's retry delivers it, so this request answers ``busy``.
    """
    if stored is None:
        return "busy"
    if stored.fingerprint != order.fingerprint:
        return "conflict"
    if stored.state == "delivered":
        return "delivered"
    if stored.claimed_until > now:
        return "busy"
    return "take_over"
