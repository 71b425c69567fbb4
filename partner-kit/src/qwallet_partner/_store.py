"""The kit's storage port: what the flows, the outbox, the Query endpoint and the callback
receiver need from the studio's database.

One method = one database transaction. The kit's two stores, ``SQLiteStore`` (the default) and
``PostgresStore``, are one SQL adapter (``_sql_store.py``) over the rules of
``_store_rules.py``, each with its connection handling and a few words of its dialect (where
SQLite's ``BEGIN IMMEDIATE`` serializes writers, PostgreSQL locks rows: ``SELECT … FOR UPDATE``,
and ``FOR UPDATE SKIP LOCKED`` when claiming due entries). Another database plugs in by
implementing this protocol.

Records are never deleted: the Query endpoint must answer for a withdrawal long after its
outbox entry was delivered, and a cpOrderId must stay "delivered" forever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

__all__ = [
    "Attempt",
    "ClaimResult",
    "DeliveryHook",
    "IssuedOrder",
    "IssuedOrderLookup",
    "Kind",
    "KitStore",
    "Operation",
    "OutboxEntry",
    "PaymentOrder",
    "TransactionRecord",
    "WithdrawalStatus",
]

Kind = Literal["withdrawal", "deposit"]
Operation = Literal["confirm", "rollback"]
TransactionState = Literal["started", "pending", "confirmed", "rolled_back"]
"""``started``: the original (withdraw/deposit) is being sent or its outcome is unknown;
``pending``: the platform accepted it and the studio's follow-up work runs;
``confirmed`` / ``rolled_back``: the studio's final decision (the outbox delivers it)."""
EntryState = Literal["due", "delivered", "failed", "expired"]
"""``failed``: the platform refused the call for good (e.g. 131) and an operator must look;
``expired``: the retry window passed without an answer; the platform will ask (spec §3)."""
ClaimResult = Literal["claimed", "delivered", "busy", "conflict"]


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    kind: Kind
    mm_transaction_id: str
    token: str
    amount: Decimal
    currency_code: str
    description: str | None
    state: TransactionState
    qw_transaction_id: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One confirm or rollback to deliver, with everything needed to send it again."""

    id: int
    kind: Kind
    operation: Operation
    mm_transaction_id: str
    token: str
    amount: Decimal
    currency_code: str
    reason: str | None
    state: EntryState
    created_at: float
    first_attempt_at: float | None
    next_attempt_at: float
    attempts: int
    last_error: str | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class Attempt:
    entry_id: int
    at: float
    outcome: str


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    """A payment callback's order, every value exactly as the platform sent it.

    ``amount`` (the total charged, e.g. ``"9.98"``), ``currency_code`` and ``provider`` (the
    payment method that paid, e.g. ``"wallet"``) are None only when a receiver in MD5-only mode
    got a callback without them. ``header_signed`` tells whether ``X-QW-Signature`` covered the
    whole body; when False (MD5-only mode), ``ext_params``, ``amount``, ``currency_code`` and
    ``provider`` are not authenticated by anything and must not be trusted.
    """

    cp_order_id: str
    uid: str
    server_id: str
    product_id: str
    product_price: str
    ext_params: str
    ts_ms: int
    amount: str | None = None
    currency_code: str | None = None
    provider: str | None = None
    header_signed: bool = False

    @property
    def fingerprint(self) -> str:
        """What must be identical when the same cpOrderId is delivered again."""
        return "\x1f".join((self.uid, self.server_id, self.product_id, self.product_price))


@dataclass(frozen=True, slots=True)
class IssuedOrder:
    """An order the studio itself issued (the purchase message it handed its game client).

    The payment-callback receiver delivers a cpOrderId only if the studio's lookup returns one
    of these for it, issued to the callback's ``uid``. Every other field that is not None is
    compared with the callback too: ``product_id`` and ``product_price`` (numerically) with the
    signed fields, ``amount`` (the total, ``product_price x product_number``, numerically) and
    ``currency_code`` with the fields the platform sends after ``extParams``.
    """

    uid: str
    product_id: str | None = None
    product_price: Decimal | None = None
    amount: Decimal | None = None
    currency_code: str | None = None


class KitStore(Protocol):
    # -- withdrawals and deposits ------------------------------------------------------------

    async def start_transaction(
        self,
        kind: Kind,
        mm_transaction_id: str,
        token: str,
        amount: Decimal,
        currency_code: str,
        description: str | None,
        now: float,
    ) -> None:
        """Record the original BEFORE it is sent, so a crash mid-call leaves a trace to roll
        back. Raises ``FlowError`` if the id is already used."""
        ...

    async def mark_pending(
        self, kind: Kind, mm_transaction_id: str, qw_transaction_id: str, now: float
    ) -> None: ...

    async def decide(
        self,
        kind: Kind,
        mm_transaction_id: str,
        operation: Operation,
        reason: str | None,
        now: float,
        not_before: float | None = None,
    ) -> OutboxEntry:
        """Record the final decision and its outbox entry in one transaction.

        The entry is due at ``now``, or at ``not_before`` if that is later (the platform asked
        for a pause with ``Retry-After``).

        Deciding the same again returns the existing entry; deciding the opposite raises
        ``FlowError``: a decision is final.
        """
        ...

    async def get_transaction(
        self, kind: Kind, mm_transaction_id: str
    ) -> TransactionRecord | None: ...

    async def undecided_before(self, before: float) -> list[TransactionRecord]:
        """Transactions left ``started``/``pending`` since before ``before`` (a process died)."""
        ...

    # -- the outbox --------------------------------------------------------------------------

    async def claim_due(self, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        """Take due entries: push their ``next_attempt_at`` to ``now + lease_s`` (so no other
        worker takes them meanwhile, and a crashed attempt is retried after the lease), count
        the attempt, and stamp ``first_attempt_at`` on the first one."""
        ...

    async def claim_entry(self, entry_id: int, now: float, lease_s: float) -> OutboxEntry | None:
        """``claim_due`` for one entry; None if it is not due (or another worker has it)."""
        ...

    async def finish_attempt(
        self,
        entry_id: int,
        now: float,
        outcome: str,
        state: EntryState,
        next_attempt_at: float | None,
    ) -> None: ...

    async def get_entry(self, kind: Kind, mm_transaction_id: str) -> OutboxEntry | None: ...

    async def attempts(self, entry_id: int) -> list[Attempt]: ...

    async def next_due_at(self) -> float | None: ...

    # -- payment callbacks -------------------------------------------------------------------

    async def claim_payment(self, order: PaymentOrder, now: float, lease_s: float) -> ClaimResult:
        """``claimed``: deliver it now; ``delivered``: already done; ``busy``: another request is
        delivering it; ``conflict``: the cpOrderId was seen with different data."""
        ...

    async def complete_payment(self, cp_order_id: str, now: float) -> None: ...

    async def release_payment(self, cp_order_id: str) -> None:
        """The delivery hook failed: forget the claim so the platform's retry delivers again."""
        ...

    async def is_delivered(self, cp_order_id: str) -> bool: ...

    async def close(self) -> None: ...


# The studio's hooks and the Query endpoint's answer live here, beside the records they are
# about, so that importing them does not need Starlette (the endpoints are an optional extra).
DeliveryHook = Callable[[PaymentOrder], Awaitable[None] | None]
"""The studio's delivery of a paid order (``PaymentCallbackApp``); idempotent by cpOrderId."""
IssuedOrderLookup = Callable[[str], Awaitable[IssuedOrder | None] | IssuedOrder | None]
"""The studio's record of the orders it issued: cpOrderId → the order, or None if never issued."""
WithdrawalStatus = Literal["CONFIRMED", "ROLLED_BACK", "PENDING", "UNKNOWN"]
"""What ``QueryWithdrawalApp`` answers for a withdrawal (spec §3)."""
