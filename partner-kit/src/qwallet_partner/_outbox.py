"""The outbox: delivers every confirm and rollback until the platform acknowledges it.

The decision is written to the kit's database before anything is sent (``KitStore.decide``),
so a crash, a restart or a network outage cannot lose it. The outbox then sends it on the
contract's schedule (spec §1.4): immediately, then after 5 s, 10 s, 20 s, 40 s, 2 min, 5 min,
10 min, 30 min, then every hour, until 48 hours have passed since the first attempt. After
that the entry is marked ``expired``: the platform's hold resolver will ask the Query Withdrawal
endpoint, which answers from the same records.

The schedule is anchored to the first attempt, not to the previous one, so attempts happen at
fixed offsets (0, 5, 15, 35, 75, 195, 495, 1095, 2895, 6495, … s) however long each call takes;
slots missed while no worker was running are skipped, not made up in a burst. When the platform
answers 104 / HTTP 429 (``RateLimitedError``), the next attempt is the next slot of the schedule
but no sooner than its ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from qwallet_partner._client import WalletClient
from qwallet_partner._clock import Clock, SystemClock
from qwallet_partner._exceptions import (
    FlowError,
    NotAllowedError,
    PartnerKitError,
    RateLimitedError,
    TransactionConfirmedError,
    TransactionRolledBackError,
    WalletAPIError,
)
from qwallet_partner._models import Money, TransactionResult
from qwallet_partner._store import EntryState, KitStore, OutboxEntry

__all__ = ["Outbox", "RetrySchedule"]

logger = logging.getLogger("qwallet.partner.outbox")

_Verdict = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When to send a confirm/rollback again: ``delays_s`` between the first attempts, then
    every ``then_every_s``, while the attempt falls within ``window_s`` of the first one."""

    delays_s: tuple[float, ...] = (5, 10, 20, 40, 120, 300, 600, 1800)
    then_every_s: float = 3600
    window_s: float = 48 * 3600

    def __post_init__(self) -> None:
        assert all(delay > 0 for delay in self.delays_s), self.delays_s
        assert self.then_every_s > 0 and self.window_s >= 0

    def offsets_s(self) -> Iterator[float]:
        """Every attempt's time since the first one: 0, 5, 15, 35, …, up to the window."""
        offset = 0.0
        delays = iter(self.delays_s)
        while offset <= self.window_s:
            yield offset
            offset += next(delays, self.then_every_s)

    def next_offset_after(self, elapsed_s: float) -> float | None:
        """The first scheduled offset after ``elapsed_s``; None once the window is over."""
        return next((o for o in self.offsets_s() if o > elapsed_s), None)


class Outbox:
    """Sends due entries from ``store`` through ``client``; ``run`` is the background worker."""

    def __init__(
        self,
        store: KitStore,
        client: WalletClient,
        *,
        schedule: RetrySchedule | None = None,
        clock: Clock | None = None,
        lease_s: float = 120.0,
        batch_size: int = 100,
        abandon_after_s: float = 900.0,
    ) -> None:
        # The lease must outlast one call, or a second worker would send the entry meanwhile
        # (harmless, since replays are idempotent, but wasteful).
        assert lease_s > 0 and batch_size > 0 and abandon_after_s > 0
        self.store = store
        self.client = client
        self.schedule = schedule or RetrySchedule()
        self.clock: Clock = clock or SystemClock()
        self.lease_s = lease_s
        self.batch_size = batch_size
        self.abandon_after_s = abandon_after_s

    async def deliver(self, entry_id: int) -> bool:
        """Attempt one entry now if it is due; True if the platform acknowledged it."""
        now = self.clock.now()
        entry = await self.store.claim_entry(entry_id, now, self.lease_s)
        if entry is None:
            return False
        return await self._attempt(entry, now) == "delivered"

    async def run_due(self) -> int:
        """Attempt every entry due now, one batch; return how many were attempted."""
        now = self.clock.now()
        entries = await self.store.claim_due(now, self.lease_s, self.batch_size)
        for entry in entries:
            await self._attempt(entry, now)
        return len(entries)

    async def recover(self) -> int:
        """Roll back transactions nobody decided on within ``abandon_after_s``.

        That happens when the process died between ``withdraw`` and the decision: the item was
        never delivered, so rollback is the only correct end (and the platform needs one).
        """
        before = self.clock.now() - self.abandon_after_s
        count = 0
        for record in await self.store.undecided_before(before):
            try:
                await self.store.decide(
                    record.kind,
                    record.mm_transaction_id,
                    "rollback",
                    "Abandoned: no decision was recorded in time.",
                    self.clock.now(),
                )
            except FlowError:
                continue  # decided meanwhile by its own flow
            logger.warning("rolled back abandoned %s %s", record.kind, record.mm_transaction_id)
            count += 1
        return count

    async def run(self, *, stop: asyncio.Event | None = None, poll_interval_s: float = 1.0) -> None:
        """Deliver due entries until ``stop`` is set; survives any error of a single pass."""
        stop = stop or asyncio.Event()
        last_recovery = float("-inf")
        while not stop.is_set():
            now = self.clock.now()
            try:
                if now - last_recovery >= 60.0:
                    last_recovery = now
                    await self.recover()
                if await self.run_due() >= self.batch_size:
                    continue  # more may be due right now
                next_due = await self.store.next_due_at()
            except Exception:
                logger.exception("outbox pass failed; trying again")
                next_due = None
            wait_s = poll_interval_s
            if next_due is not None:
                wait_s = min(poll_interval_s, max(0.0, next_due - self.clock.now()))
            await _sleep_unless_stopped(self.clock, wait_s, stop)

    async def _attempt(self, entry: OutboxEntry, now: float) -> _Verdict:
        assert entry.first_attempt_at is not None
        error: BaseException | None = None
        try:
            await self._send(entry)
        except Exception as exc:
            error = exc
        verdict = _classify(entry, error)
        outcome = "ok" if error is None else _describe(error)
        state: EntryState
        next_attempt_at: float | None = None
        if verdict == "retry":
            offset = self.schedule.next_offset_after(now - entry.first_attempt_at)
            if offset is not None and isinstance(error, RateLimitedError):
                offset = self._not_sooner_than_asked(entry.first_attempt_at, now, offset, error)
            if offset is None:
                state = "expired"
                logger.error(
                    "%s %s expired after %d attempts: %s",
                    entry.operation,
                    entry.mm_transaction_id,
                    entry.attempts,
                    outcome,
                )
            else:
                state, next_attempt_at = "due", entry.first_attempt_at + offset
        else:
            state = verdict
            if verdict == "failed":
                logger.error(
                    "%s %s refused by the platform: %s",
                    entry.operation,
                    entry.mm_transaction_id,
                    outcome,
                )
        await self.store.finish_attempt(entry.id, now, outcome, state, next_attempt_at)
        return verdict

    def _not_sooner_than_asked(
        self, first_attempt_at: float, now: float, offset: float, error: RateLimitedError
    ) -> float | None:
        """The scheduled ``offset``, pushed to the platform's ``Retry-After`` if that is later;
        None if that falls outside the retry window (the hold resolver takes over then)."""
        if error.retry_after_s is None:
            return offset
        asked = now + error.retry_after_s - first_attempt_at
        if asked <= offset:
            return offset
        return asked if asked <= self.schedule.window_s else None

    async def _send(self, entry: OutboxEntry) -> TransactionResult:
        client = self.client
        if entry.operation == "confirm":
            money = Money(entry.amount, entry.currency_code)
            if entry.kind == "withdrawal":
                return await client.confirm_withdrawal(entry.token, entry.mm_transaction_id, money)
            return await client.confirm_deposit(entry.token, entry.mm_transaction_id, money)
        if entry.kind == "withdrawal":
            return await client.rollback_withdrawal(
                entry.token, entry.mm_transaction_id, entry.reason
            )
        return await client.rollback_deposit(entry.token, entry.mm_transaction_id, entry.reason)


async def _sleep_unless_stopped(clock: Clock, duration_s: float, stop: asyncio.Event) -> None:
    # Wake up as soon as ``stop`` is set, so shutting the kit down never waits for a poll.
    sleeper = asyncio.ensure_future(clock.sleep(duration_s))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()


def _classify(entry: OutboxEntry, error: BaseException | None) -> _Verdict:
    if error is None:
        return "delivered"
    # The platform already is where we want it (replays normally answer success anyway).
    if entry.operation == "confirm" and isinstance(error, TransactionConfirmedError):
        return "delivered"
    if entry.operation == "rollback" and isinstance(error, TransactionRolledBackError):
        return "delivered"
    # Credentials can be fixed by an operator while we keep trying; the rest is definitive.
    if isinstance(error, PartnerKitError) and (
        error.retryable or isinstance(error, NotAllowedError)
    ):
        return "retry"
    if isinstance(error, WalletAPIError):
        return "failed"
    return "retry"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
