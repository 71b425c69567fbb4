"""The payment worker: runs inside each server process (the app's lifespan).

Each tick it applies the providers' due events (sandbox confirmations) and sends the due payment
callbacks. All state is in the database, so the worker can stop at any moment and any number of
processes can run it side by side (see ``qwallet.payments.delivery`` for the claim). ``wake()``
makes the next tick start at once, e.g. right after a payment in this process.

``stop()`` (the server shutting down) lets the tick in progress finish: every order it claimed
is sent and its attempt recorded, which gives the claim back, so no lease is left for another
process to wait out. Only a tick still running after ``stop_timeout_s`` (a callback timeout and
a margin) is cancelled; its orders then become due again when their lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import httpx

from qwallet.clock import Clock
from qwallet.domain.money import CurrencyRegistry
from qwallet.payments.delivery import Deliverer, DeliveryPolicy
from qwallet.payments.providers import PaymentProvider, settle
from qwallet.store.sql import SqlDatabase

logger = logging.getLogger("qwallet.payments.worker")


class PaymentWorker:
    def __init__(
        self,
        db: SqlDatabase,
        clock: Clock,
        providers: Mapping[str, PaymentProvider],
        *,
        currencies: CurrencyRegistry,
        policy: DeliveryPolicy | None = None,
        interval_s: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        assert interval_s > 0
        self.db, self.clock, self.providers = db, clock, providers
        self.interval_s = interval_s
        self.policy = policy or DeliveryPolicy()
        # No redirects: a callback is answered where it was sent, or it is not delivered.
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)
        self.deliverer = Deliverer(db, clock, self._client, self.policy, currencies)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One tick: settle due provider events, then attempt due deliveries."""
        now_ms = self.clock.now_ms()
        for provider in self.providers.values():
            for event in await provider.due_events(self.db, now_ms):
                outcome = await settle(self.db, event, now_ms, method=provider.method)
                if outcome is not None:
                    logger.info("payment %s for order %s", outcome, event.order_id)
        return await self.deliverer.deliver_due()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        assert self._task is None, "already started"
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="qwallet-payment-worker")

    @property
    def stop_timeout_s(self) -> float:
        """How long ``stop`` waits for a tick: its callbacks' timeout and a margin to record."""
        return self.policy.timeout_s + 5.0

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.stop_timeout_s)
            except TimeoutError:
                logger.warning(
                    "payment worker tick still running after %.0f s: cancelled", self.stop_timeout_s
                )
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self._client.aclose()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
            except Exception:
                # A database hiccup must not kill the worker: log it and try again next tick.
                logger.exception("payment worker tick failed")
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
