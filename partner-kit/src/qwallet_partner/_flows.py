"""``PartnerKit`` and its withdrawal/deposit flows: the contract's two-phase rules, enforced.

::

    async with kit.withdrawal(token, Money(Decimal("4.99"), "XAG"), "Sword") as w:
        await give_sword(player)          # the follow-up work
    # no exception → confirm; any exception or cancellation → rollback

What the flow guarantees, whatever the caller does (spec §1.4):

- the kit generates a fresh ``mmTransactionId`` and records the transaction before sending;
- ``withdraw`` (``deposit``) is sent exactly once, never retried;
- if it fails for ANY reason — a refusal, a timeout, a 5xx, a dropped connection, a
  cancellation — a rollback is decided and the original exception propagates; the block body
  does not run;
- when the block ends, the decision (confirm, or rollback on any exception) is written to the
  database before it is sent, sent once inline, and left to the outbox worker if that attempt
  is not acknowledged;
- when the platform answered 104 / HTTP 429 (``RateLimitedError``), nothing is sent before its
  ``Retry-After`` has passed: the rollback that follows a rate-limited original is left to the
  outbox, due at that time;
- a flow runs once: entering it twice raises ``FlowError``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self

from qwallet_partner._client import WalletClient
from qwallet_partner._clock import Clock, SystemClock
from qwallet_partner._exceptions import FlowError, RateLimitedError
from qwallet_partner._models import (
    Money,
    TransactionResult,
    check_amount,
    check_text,
    check_token,
    check_transaction_id,
)
from qwallet_partner._outbox import Outbox, RetrySchedule
from qwallet_partner._store import Kind, KitStore, Operation

__all__ = ["Deposit", "PartnerKit", "Withdrawal"]

MAX_ID_PREFIX_CHARS = 32


class PartnerKit:
    """The studio's entry point: flows, the outbox worker, and the records behind them.

    ``async with PartnerKit(...) as kit`` runs the outbox worker in the background and closes
    the client and the store at the end (the kit owns both).
    """

    def __init__(
        self,
        client: WalletClient,
        store: KitStore,
        *,
        clock: Clock | None = None,
        schedule: RetrySchedule | None = None,
        id_prefix: str = "",
        id_factory: Callable[[], str] | None = None,
        abandon_after_s: float = 900.0,
        poll_interval_s: float = 1.0,
    ) -> None:
        if len(id_prefix) > MAX_ID_PREFIX_CHARS:
            raise ValueError(f"id_prefix is longer than {MAX_ID_PREFIX_CHARS} characters")
        check_transaction_id(id_prefix or "x")
        self.client = client
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.outbox = Outbox(
            store, client, schedule=schedule, clock=self.clock, abandon_after_s=abandon_after_s
        )
        self._id_prefix = id_prefix
        self._id_factory = id_factory or (lambda: uuid.uuid4().hex)
        self._poll_interval_s = poll_interval_s
        self._stop = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    def new_transaction_id(self) -> str:
        """A fresh mmTransactionId: the prefix and 32 random hex digits (≤ 64 printable ASCII)."""
        return check_transaction_id(self._id_prefix + self._id_factory())

    def withdrawal(self, token: str, amount: Money, description: str | None = None) -> Withdrawal:
        return Withdrawal(self, token, amount, description)

    def deposit(self, token: str, amount: Money, description: str | None = None) -> Deposit:
        return Deposit(self, token, amount, description)

    async def start(self) -> None:
        """Start the outbox worker (it also rolls back what a dead process left undecided)."""
        if self._worker is None:
            self._stop.clear()
            self._worker = asyncio.create_task(
                self.outbox.run(stop=self._stop, poll_interval_s=self._poll_interval_s),
                name="qwallet-partner-outbox",
            )

    async def stop(self) -> None:
        if self._worker is not None:
            self._stop.set()
            worker, self._worker = self._worker, None
            await worker

    async def aclose(self) -> None:
        await self.stop()
        await self.client.aclose()
        await self.store.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _TwoPhase:
    """A withdrawal or deposit, as an async context manager (see the module docstring)."""

    kind: Kind

    def __init__(self, kit: PartnerKit, token: str, amount: Money, description: str | None) -> None:
        # Refuse impossible arguments now, before anything is recorded or sent.
        self.token = check_token(token)
        self.amount = check_amount(amount)
        self.description = check_text(description, "description")
        self.mm_transaction_id = kit.new_transaction_id()
        self.result: TransactionResult | None = None
        """The platform's answer to the original; set once the block body runs."""
        self.outcome: Literal["confirmed", "rolled_back"] | None = None
        self.acknowledged = False
        """True if the platform acknowledged the decision inline; else the outbox retries."""
        self._kit = kit
        self._entered = False
        self._rollback_reason: str | None = None

    def rollback_on_exit(self, reason: str = "Cancelled by the game.") -> None:
        """Roll back at the end of the block without raising (e.g. the item ran out)."""
        self._rollback_reason = check_text(reason, "reason") or "Cancelled by the game."

    async def __aenter__(self) -> Self:
        if self._entered:
            raise FlowError("a flow runs once; start a new one for another transaction")
        self._entered = True
        kit = self._kit
        await kit.store.start_transaction(
            self.kind,
            self.mm_transaction_id,
            self.token,
            self.amount.amount,
            self.amount.currency_code,
            self.description,
            kit.clock.now(),
        )
        try:
            self.result = await self._send_original()
        except BaseException as exc:
            # ANY failure of the original, even a refusal, is followed by a rollback (the
            # documented rule): it also blocks a late original still travelling.
            await self._finish("rollback", f"{self._original_name} failed: {_name(exc)}", exc)
            raise
        await kit.store.mark_pending(
            self.kind, self.mm_transaction_id, self.result.qw_transaction_id, kit.clock.now()
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            await self._finish("rollback", f"Follow-up failed: {_name(exc)}", exc)
        elif self._rollback_reason is not None:
            await self._finish("rollback", self._rollback_reason, None)
        else:
            await self._finish("confirm", None, None)

    async def _finish(
        self, operation: Operation, reason: str | None, exc: BaseException | None
    ) -> None:
        kit = self._kit
        now = kit.clock.now()
        not_before = None
        if isinstance(exc, RateLimitedError) and exc.retry_after_s:
            not_before = now + exc.retry_after_s
        if not_before is None:
            # Without the newer argument, so a studio's own KitStore written before it still works.
            entry = await kit.store.decide(
                self.kind, self.mm_transaction_id, operation, reason, now
            )
        else:
            entry = await kit.store.decide(
                self.kind, self.mm_transaction_id, operation, reason, now, not_before
            )
        self.outcome = "confirmed" if operation == "confirm" else "rolled_back"
        if isinstance(exc, asyncio.CancelledError) or not_before is not None:
            # Cancelled: the decision is durable, the worker will send it. Rate limited: the
            # platform asked for a pause; the worker sends it once the entry is due.
            return
        self.acknowledged = await kit.outbox.deliver(entry.id)

    @property
    def _original_name(self) -> str:
        return "withdraw" if self.kind == "withdrawal" else "deposit"

    async def _send_original(self) -> TransactionResult:
        raise NotImplementedError


class Withdrawal(_TwoPhase):
    kind: Kind = "withdrawal"

    async def _send_original(self) -> TransactionResult:
        client: WalletClient = self._kit.client
        return await client.withdraw(
            self.token, self.mm_transaction_id, self.amount, self.description
        )


class Deposit(_TwoPhase):
    kind: Kind = "deposit"

    async def _send_original(self) -> TransactionResult:
        client: WalletClient = self._kit.client
        return await client.deposit(
            self.token, self.mm_transaction_id, self.amount, self.description
        )


def _name(exc: BaseException) -> str:
    # Only the type: exception messages may carry player data that has no place on the wire.
    return type(exc).__name__[:100]
