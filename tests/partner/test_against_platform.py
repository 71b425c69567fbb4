"""The partner kit against the REAL platform: the server on loopback, both platform databases,
and the kit's records on both of its stores (SQLite and PostgreSQL).

Network faults are injected by a wrapper transport that sits between the kit and the real server:
it can refuse the connection (the platform is down), or forward the call and then lose the answer
(a 500 or a timeout after the platform applied it) — the case the two-phase rules exist for.
A process killed with SIGKILL mid-flow is a real subprocess.

Every test ends with the platform's own view: the wallet row and ``reconcile().ok``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from qwallet.partner import (
    FakeClock,
    KitStore,
    Money,
    OtherError,
    OutcomeUnknownError,
    PartnerKit,
    PostgresStore,
    RetrySchedule,
    SQLiteStore,
    TransactionRolledBackError,
    WalletClient,
    WalletTimeoutError,
)

from ..conftest import LiveServer, Platform
from .conftest import kit_backend, new_store  # noqa: F401 - fixtures

SEVEN = Money(Decimal("7.00"), "XAG")


class Boom(Exception):
    pass


class FaultyTransport(httpx.AsyncBaseTransport):
    """Forwards to the real server, except for the faults queued per endpoint:

    - ``down``: connection refused, nothing reaches the platform;
    - ``500_before``: an HTTP 500 without forwarding;
    - ``500_after`` / ``timeout_after``: forwarded (the platform applies it), answer lost.
    """

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.faults: dict[str, list[str]] = {}
        self.down = False
        self.log: list[tuple[str, str]] = []

    def fail(self, endpoint: str, *behaviours: str) -> None:
        self.faults.setdefault(endpoint, []).extend(behaviours)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        queued = self.faults.get(endpoint)
        behaviour = queued.pop(0) if queued else ("down" if self.down else "ok")
        self.log.append((endpoint, behaviour))
        if behaviour == "down":
            raise httpx.ConnectError("connection refused (platform down)", request=request)
        if behaviour == "500_before":
            return httpx.Response(500, json={"errorCode": 100, "errorDescription": "injected"})
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        await response.aclose()
        if behaviour == "500_after":
            return httpx.Response(500, json={"errorCode": 100, "errorDescription": "injected"})
        if behaviour == "timeout_after":
            raise httpx.ReadTimeout("answer lost (injected)", request=request)
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def calls(self, endpoint: str) -> list[str]:
        return [behaviour for name, behaviour in self.log if name == endpoint]


@pytest.fixture
def kit_db(kit_backend: str | None, new_store: object, tmp_path: Path) -> str:  # noqa: F811
    """Where the kit keeps its records: a SQLite path, or a (freshly emptied) PostgreSQL URL."""
    return kit_backend if kit_backend is not None else str(tmp_path / "kit.db")


def open_kit_store(kit_db: str) -> KitStore:
    return PostgresStore(kit_db) if kit_db.startswith("postgresql://") else SQLiteStore(kit_db)


class Studio:
    """One partner at the real platform, one player with a session, and the kit's database."""

    def __init__(self, server: LiveServer, platform: Platform, kit_db: str) -> None:
        self.server = server
        self.platform = platform
        self.kit_db = kit_db
        self.username, self.password = platform.create_partner()
        self.player_id = platform.create_player("100.00")
        self.token = platform.create_session(self.player_id, self.username)

    def kit(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: FakeClock | None = None,
        schedule: RetrySchedule | None = None,
    ) -> PartnerKit:
        client = WalletClient(
            self.server.url, self.username, self.password, timeout_s=10, transport=transport
        )
        return PartnerKit(client, open_kit_store(self.kit_db), clock=clock, schedule=schedule)

    def wallet(self) -> dict[str, object]:
        return self.platform.player(self.player_id)

    async def held(self) -> object:
        """The platform's view from inside a running event loop (its helper has its own)."""
        return (await asyncio.to_thread(self.wallet))["held"]

    def assert_settled(self, available: str) -> None:
        wallet = self.wallet()
        assert (wallet["available"], wallet["held"], wallet["pendingIn"]) == (
            available,
            "0.00",
            "0.00",
        ), wallet
        assert self.platform.reconcile().ok


@asynccontextmanager
async def inline(kit: PartnerKit) -> AsyncIterator[PartnerKit]:
    """The kit without its background worker, so every decision is sent inline by the flow
    (with the worker running, it may take a fresh entry first and ``acknowledged`` is False)."""
    try:
        yield kit
    finally:
        await kit.aclose()


@pytest.fixture
def studio(server: LiveServer, platform: Platform, kit_db: str) -> Studio:
    return Studio(server, platform, kit_db)


def test_withdrawal_confirmed_and_deposit(studio: Studio) -> None:
    async def main() -> None:
        async with inline(studio.kit()) as kit:
            async with kit.withdrawal(studio.token, SEVEN, "Sword") as w:
                assert await studio.held() == "7.00"  # the platform holds it meanwhile
            assert w.outcome == "confirmed" and w.acknowledged
            assert w.result is not None and str(w.result.balance.amount) == "93.00"
            async with kit.deposit(studio.token, Money(Decimal("2.50"), "XAG"), "Bonus") as d:
                wallet = await asyncio.to_thread(studio.wallet)
                assert wallet["pendingIn"] == "2.50"
            assert d.acknowledged
            record = await kit.store.get_transaction("withdrawal", w.mm_transaction_id)
            assert record is not None and record.state == "confirmed"
            assert record.qw_transaction_id == w.result.qw_transaction_id

    asyncio.run(main())
    studio.assert_settled("95.50")


def test_exception_in_follow_up_rolls_back(studio: Studio) -> None:
    async def main() -> None:
        async with inline(studio.kit()) as kit:
            with pytest.raises(Boom):
                async with kit.withdrawal(studio.token, SEVEN) as w:
                    raise Boom
            assert w.outcome == "rolled_back" and w.acknowledged
            with pytest.raises(Boom):
                async with kit.deposit(studio.token, SEVEN):
                    raise Boom

    asyncio.run(main())
    studio.assert_settled("100.00")


@pytest.mark.parametrize("fault", ["500_after", "timeout_after", "500_before"])
def test_failed_withdraw_is_rolled_back(studio: Studio, fault: str) -> None:
    """The answer to withdraw is lost (or is a 5xx): the kit rolls back and never re-sends."""
    transport = FaultyTransport()
    transport.fail("withdraw", fault)
    expected = WalletTimeoutError if fault == "timeout_after" else OtherError

    async def main() -> str:
        async with inline(studio.kit(transport=transport)) as kit:
            with pytest.raises(expected) as caught:
                async with kit.withdrawal(studio.token, SEVEN):
                    raise AssertionError("the block must not run")
            assert isinstance(caught.value, OutcomeUnknownError)
            entries = await kit.store.undecided_before(time.time() + 10)
            assert entries == []  # decided: rolled back
            return transport.log[0][0]

    assert asyncio.run(main()) == "withdraw"
    assert transport.calls("withdraw") == [fault]  # sent exactly once
    assert transport.calls("rollbackWithdrawal") == ["ok"]
    studio.assert_settled("100.00")


def test_late_original_after_rollback_is_refused(studio: Studio) -> None:
    """The withdraw never arrived, the kit's rollback did: a late copy can no longer take money."""
    transport = FaultyTransport()
    transport.fail("withdraw", "500_before")

    async def main() -> None:
        async with inline(studio.kit(transport=transport)) as kit:
            flow = kit.withdrawal(studio.token, SEVEN)
            with pytest.raises(OtherError):
                async with flow:
                    pass
            assert flow.outcome == "rolled_back" and flow.acknowledged
            with pytest.raises(TransactionRolledBackError):
                await kit.client.withdraw(studio.token, flow.mm_transaction_id, SEVEN)

    asyncio.run(main())
    studio.assert_settled("100.00")


def test_platform_down_during_confirm_outbox_retries_on_schedule(studio: Studio) -> None:
    transport = FaultyTransport()
    clock = FakeClock(time.time())

    async def main() -> None:
        kit = studio.kit(transport=transport, clock=clock)
        async with kit.withdrawal(studio.token, SEVEN) as w:
            transport.down = True  # the platform goes away before the confirm
        assert w.outcome == "confirmed" and not w.acknowledged
        assert await studio.held() == "7.00"
        # The worker's passes at each due time, on the fake clock: 48 hours in milliseconds.
        while (due := await kit.store.next_due_at()) is not None:
            clock.set(max(due, clock.now()))
            entry = await kit.store.get_entry("withdrawal", w.mm_transaction_id)
            assert entry is not None
            if entry.attempts == 6:
                transport.down = False  # back after ~2 minutes
            await kit.outbox.run_due()
        entry = await kit.store.get_entry("withdrawal", w.mm_transaction_id)
        assert entry is not None and entry.state == "delivered" and entry.attempts == 7
        assert entry.first_attempt_at is not None
        offsets = [a.at - entry.first_attempt_at for a in await kit.store.attempts(entry.id)]
        assert offsets == [0, 5, 15, 35, 75, 195, 495]  # the documented schedule
        await kit.aclose()

    asyncio.run(main())
    assert transport.calls("confirmWithdrawal") == ["down"] * 6 + ["ok"]
    studio.assert_settled("93.00")


def test_worker_in_background_delivers_when_the_platform_returns(studio: Studio) -> None:
    """The same through ``async with kit`` (the worker task), on a short real schedule."""
    transport = FaultyTransport()
    schedule = RetrySchedule(delays_s=(0.05, 0.05, 0.1), then_every_s=0.1, window_s=30)

    async def main() -> None:
        async with studio.kit(transport=transport, schedule=schedule) as kit:
            transport.fail("confirmWithdrawal", "down", "down", "500_after")
            async with kit.withdrawal(studio.token, SEVEN) as w:
                pass
            assert not w.acknowledged
            for _ in range(300):
                entry = await kit.store.get_entry("withdrawal", w.mm_transaction_id)
                if entry is not None and entry.state == "delivered":
                    break
                await asyncio.sleep(0.02)
            assert entry is not None and entry.state == "delivered"

    asyncio.run(main())
    # The 500 came after the platform applied it; the replay answered success.
    assert transport.calls("confirmWithdrawal") == ["down", "down", "500_after", "ok"]
    studio.assert_settled("93.00")


# -- a partner process killed with SIGKILL ------------------------------------------------------

CHILD = r"""
import asyncio, json, sys
from decimal import Decimal

import httpx

from qwallet.partner import Money, PartnerKit, PostgresStore, SQLiteStore, WalletClient

url, username, password, token, kit_db, mode = sys.argv[1:7]


class HangOnConfirm(httpx.AsyncBaseTransport):
    # The decision is already committed when the confirm is sent: hang there, to be killed.
    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        if request.url.path.endswith("/confirmWithdrawal"):
            print(json.dumps({"stage": "confirming"}), flush=True)
            await asyncio.Event().wait()
        return await self.inner.handle_async_request(request)


async def main():
    store = PostgresStore(kit_db) if kit_db.startswith("postgresql://") else SQLiteStore(kit_db)
    transport = HangOnConfirm() if mode == "decided" else None
    kit = PartnerKit(WalletClient(url, username, password, transport=transport), store)
    async with kit.withdrawal(token, Money(Decimal("7.00"), "XAG"), "Killed") as w:
        print(json.dumps({"stage": "withdrawn", "mm": w.mm_transaction_id}), flush=True)
        if mode == "withdrawn":
            await asyncio.Event().wait()  # the follow-up never ends


asyncio.run(main())
"""


def run_child_until(studio: Studio, mode: str, stage: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            studio.server.url,
            studio.username,
            studio.password,
            studio.token,
            studio.kit_db,
            mode,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    mm_id = ""
    while True:
        line = child.stdout.readline()
        assert line, f"the partner process ended early (exit {child.wait()})"
        message = json.loads(line)
        mm_id = message.get("mm", mm_id)
        if message["stage"] == stage:
            return child, mm_id


def kill_9(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    assert child.stdout is not None
    child.stdout.close()


@pytest.fixture
def killed(studio: Studio) -> Iterator[list[subprocess.Popen[str]]]:
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:  # only ours, by pid
        if child.poll() is None:
            kill_9(child)


def test_killed_between_withdraw_and_decision_is_rolled_back_after_restart(
    studio: Studio, killed: list[subprocess.Popen[str]]
) -> None:
    child, mm_id = run_child_until(studio, "withdrawn", "withdrawn")
    killed.append(child)
    assert studio.wallet()["held"] == "7.00"
    kill_9(child)
    assert studio.wallet()["held"] == "7.00"  # the platform still holds the funds

    async def restart() -> None:
        clock = FakeClock(time.time())
        kit = studio.kit(clock=clock)
        record = await kit.store.get_transaction("withdrawal", mm_id)
        assert record is not None and record.state == "pending"
        assert await kit.outbox.recover() == 0  # it might still be running: wait
        clock.advance(kit.outbox.abandon_after_s + 1)
        assert await kit.outbox.recover() == 1
        assert await kit.outbox.run_due() == 1
        entry = await kit.store.get_entry("withdrawal", mm_id)
        assert entry is not None and (entry.operation, entry.state) == ("rollback", "delivered")
        await kit.aclose()

    asyncio.run(restart())
    studio.assert_settled("100.00")


def test_killed_after_the_decision_confirms_after_restart(
    studio: Studio, killed: list[subprocess.Popen[str]]
) -> None:
    child, mm_id = run_child_until(studio, "decided", "confirming")
    killed.append(child)
    kill_9(child)
    assert studio.wallet()["held"] == "7.00"

    async def restart() -> None:
        clock = FakeClock(time.time())
        kit = studio.kit(clock=clock)
        record = await kit.store.get_transaction("withdrawal", mm_id)
        assert record is not None and record.state == "confirmed"  # Query answers CONFIRMED
        # The dead process held the entry's lease; once it lapses the entry is due again.
        assert await kit.outbox.run_due() == 0
        clock.advance(kit.outbox.lease_s + 1)
        assert await kit.outbox.run_due() == 1
        entry = await kit.store.get_entry("withdrawal", mm_id)
        assert entry is not None and (entry.operation, entry.state) == ("confirm", "delivered")
        assert entry.attempts == 2  # the killed one, then ours
        await kit.aclose()

    asyncio.run(restart())
    studio.assert_settled("93.00")
