"""The hold resolver: finds overdue withdrawals, queries the partner, applies the answer.

One pass (``run_once``):

1. read up to ``scan_limit`` withdrawals still ``pending`` and created at least the hold window
   ago (never-asked first, then least recently asked);
2. skip those whose last non-final answer is more recent than the backoff (``backoff_s``);
3. for each due one, ``POST`` the partner's ``query_url`` (Basic with ``query_username`` /
   ``query_password``) with ``{"mmTransactionId", "qwTransactionId"}``;
4. ``CONFIRMED`` → confirm; ``ROLLED_BACK`` or ``UNKNOWN`` → roll back; ``PENDING``, no answer,
   an error status, a timeout or a malformed answer → ask again later. Every outcome is a
   ``hold_resolutions`` row; confirm and rollback are applied by ``service.holds.resolve`` in
   one database transaction, only while the transaction is still pending.

Several processes may run it at once: the state change is conditional and serialized by the
database, so a hold resolved meanwhile (by another process or by the partner's own late retry)
is recorded as ``already_final`` and no money moves twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import msgspec
from prometheus_client import Counter

from qwallet.clock import Clock
from qwallet.domain.transactions import Kind
from qwallet.monitoring import instruments
from qwallet.service import holds, sessions
from qwallet.service.holds import RESOLVER, Resolution
from qwallet.settings import Settings
from qwallet.store.sql import SqlDatabase

logger = logging.getLogger("qwallet.resolver")

RESOLUTIONS = Counter(
    "qwallet_hold_resolutions_total",
    "Hold resolutions by action (confirmed, rolled_back, retry_later, already_final).",
    ["action"],
)
for _action in ("confirmed", "rolled_back", "retry_later", "already_final"):
    RESOLUTIONS.labels(_action)  # a series from the start: a rate would miss its first increment

PartnerStatus = Literal["CONFIRMED", "ROLLED_BACK", "PENDING", "UNKNOWN"]
MAX_ANSWER_BYTES = 16 * 1024
USER_AGENT = "qwallet-hold-resolver/1"


class _Answer(msgspec.Struct, rename="camel"):
    mm_transaction_id: str
    status: str


@dataclass(frozen=True, slots=True)
class PartnerAnswer:
    """What the partner said: a status, or ``None`` with the reason there was no usable answer."""

    status: PartnerStatus | None
    detail: str


@dataclass(frozen=True, slots=True)
class Outcome:
    qw_transaction_id: str
    mm_transaction_id: str
    partner: str
    resolution: Resolution


def backoff_s(retries: int, base_s: int, max_s: int) -> int:
    """Wait before asking again after ``retries`` non-final answers: base, 2 base, 4 base… ≤ max."""
    if retries <= 0:
        return 0
    return int(min(base_s * 2 ** min(retries - 1, 30), max_s))


class HoldResolver:
    """Resolves overdue holds; ``transport`` is injectable (tests, proxies)."""

    def __init__(
        self,
        db: SqlDatabase,
        settings: Settings,
        clock: Clock,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        batch: int = 100,
        scan_limit: int = 500,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.batch = batch
        self.scan_limit = scan_limit
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.hold_query_timeout_s),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HoldResolver:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- one pass --------------------------------------------------------------------------

    async def due(self) -> list[Mapping[str, Any]]:
        now_ms = self.clock.now_ms()
        cutoff_ms = now_ms - self.settings.hold_window_s * 1000
        candidates = await holds.overdue(self.db, Kind.WITHDRAWAL, cutoff_ms, self.scan_limit)
        due: list[Mapping[str, Any]] = []
        for row in candidates:
            wait_s = backoff_s(
                int(row["retries"]), self.settings.hold_retry_s, self.settings.hold_retry_max_s
            )
            last = row["last_attempt_at_ms"]
            if last is None or int(last) + wait_s * 1000 <= now_ms:
                due.append(row)
            if len(due) >= self.batch:
                break
        return due

    async def run_once(self, stop: asyncio.Event | None = None) -> list[Outcome]:
        """Resolve every hold that is due now, or until ``stop`` is set; returns what was done."""
        outcomes = []
        for row in await self.due():
            if stop is not None and stop.is_set():
                break  # the server is stopping: the rest is due again on the next pass anywhere
            try:
                outcomes.append(await self.resolve_row(row))
            except Exception:
                # One broken row must not stop the others; it is retried on the next pass.
                logger.exception("hold %s could not be resolved", row["qw_transaction_id"])
        return outcomes

    async def resolve_row(self, row: Mapping[str, Any]) -> Outcome:
        qw_id, mm_id = str(row["qw_transaction_id"]), str(row["mm_transaction_id"])
        answer = await self.ask(row)
        now_ms = self.clock.now_ms()
        if answer.status == "CONFIRMED":
            resolution = await holds.resolve(
                self.db,
                qw_id,
                "confirm",
                actor=RESOLVER,
                partner_status=answer.status,
                detail=answer.detail,
                now_ms=now_ms,
            )
        elif answer.status in ("ROLLED_BACK", "UNKNOWN"):
            resolution = await holds.resolve(
                self.db,
                qw_id,
                "rollback",
                actor=RESOLVER,
                partner_status=answer.status,
                detail=answer.detail,
                now_ms=now_ms,
            )
        else:
            resolution = await holds.retry_later(
                self.db,
                qw_id,
                actor=RESOLVER,
                partner_status=answer.status,
                detail=answer.detail,
                now_ms=now_ms,
            )
        RESOLUTIONS.labels(resolution.action).inc()
        logger.info(
            "hold %s (%s) partner %s: %s → %s",
            qw_id,
            mm_id,
            row["partner"],
            answer.status or "no answer",
            resolution.action,
        )
        return Outcome(qw_id, mm_id, str(row["partner"]), resolution)

    async def ask(self, row: Mapping[str, Any]) -> PartnerAnswer:
        """Query Withdrawal at the partner; never raises."""
        url = row["query_url"]
        if not url:
            return PartnerAnswer(None, "partner has no query URL configured")
        mm_id = str(row["mm_transaction_id"])
        username, password = row["query_username"], row["query_password"]
        auth = (str(username), str(password or "")) if username else None
        body = {"mmTransactionId": mm_id, "qwTransactionId": str(row["qw_transaction_id"])}
        try:
            async with self._client.stream("POST", str(url), json=body, auth=auth) as response:
                content = b""
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_ANSWER_BYTES:
                        return PartnerAnswer(None, f"answer larger than {MAX_ANSWER_BYTES} bytes")
        except httpx.TimeoutException as error:
            return PartnerAnswer(None, f"no answer: timeout ({type(error).__name__})")
        except httpx.HTTPError as error:
            return PartnerAnswer(None, f"no answer: {type(error).__name__}: {error}"[:200])
        if response.status_code != 200:
            return PartnerAnswer(None, f"HTTP {response.status_code}: {_excerpt(content)}")
        try:
            answer = msgspec.json.decode(content, type=_Answer)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return PartnerAnswer(None, f"invalid answer: {_excerpt(content)}")
        if answer.mm_transaction_id != mm_id:
            return PartnerAnswer(None, f"answer names mmTransactionId {answer.mm_transaction_id!r}")
        if answer.status not in ("CONFIRMED", "ROLLED_BACK", "PENDING", "UNKNOWN"):
            return PartnerAnswer(None, f"invalid status {answer.status[:40]!r}")
        status: PartnerStatus = answer.status  # type: ignore[assignment]
        return PartnerAnswer(status, f"partner answered {status}")

    async def prune_sessions(self) -> int:
        """Housekeeping on every pass: delete game sessions that expired more than the hold
        window ago (no confirm or rollback can still name them: the partner's retries end
        within it, and the holds left after it are this resolver's), a bounded number of
        short batches (``service.sessions.prune_sessions``)."""
        return await sessions.prune_sessions(
            self.db, now_ms=self.clock.now_ms(), retention_ms=self.settings.hold_window_s * 1000
        )

    # -- the worker ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, interval_s: float | None = None) -> None:
        """Pass after pass until ``stop`` is set; a failing pass is logged, not fatal."""
        interval = self.settings.hold_resolver_interval_s if interval_s is None else interval_s
        instruments.resolver_started(interval)
        while not stop.is_set():
            try:
                await self.run_once(stop)
                await self.prune_sessions()
            except Exception:
                logger.exception("hold resolver pass failed")
                instruments.resolver_pass(ok=False)
            else:
                instruments.resolver_pass(ok=True)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


def _excerpt(content: bytes) -> str:
    return content[:120].decode("utf-8", "replace").replace("\n", " ")


@asynccontextmanager
async def running(
    db: SqlDatabase,
    settings: Settings,
    clock: Clock,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[HoldResolver | None]:
    """Run the resolver in the background while the block runs (``serve``'s lifespan).

    Off when ``settings.hold_resolver_interval_s`` is 0. Leaving the block (the server stopping)
    stops the worker: a pass in progress finishes the hold it is asking about (one Query
    Withdrawal call, then one database transaction) and skips the rest, which are due again on
    the next pass of any process. The resolver holds no lease: every change is conditional on
    the hold still being pending, so there is nothing to give back. Only a hold still running
    after the query timeout and a margin is cancelled (its transaction, if any, rolls back).
    """
    if settings.hold_resolver_interval_s <= 0:
        yield None
        return
    resolver = HoldResolver(db, settings, clock, transport=transport)
    stop = asyncio.Event()
    task = asyncio.create_task(resolver.run(stop), name="qwallet-hold-resolver")
    try:
        yield resolver
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=settings.hold_query_timeout_s + 5)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await resolver.aclose()
