"""The outbox's retry schedule, its end after 48 hours, and restarts, on a fake clock."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from kit_support import make_kit
from qwallet_partner import (
    FakeClock,
    InMemoryWallet,
    Money,
    Outbox,
    PartnerKit,
    RetrySchedule,
    SQLiteStore,
    WalletClient,
)

HOUR_S = 3600
DOCUMENTED_START_S = [0, 5, 15, 35, 75, 195, 495, 1095, 2895]
"""Immediately, then after 5 s, 10 s, 20 s, 40 s, 2 min, 5 min, 10 min, 30 min (spec §1.4)."""


def documented_offsets_s() -> list[float]:
    offsets = [float(o) for o in DOCUMENTED_START_S]
    while offsets[-1] + HOUR_S <= 48 * HOUR_S:
        offsets.append(offsets[-1] + HOUR_S)
    return offsets


async def drain(outbox: Outbox, clock: FakeClock) -> None:
    """Run the worker at each due time until nothing is due: 48 hours in milliseconds."""
    while (due := await outbox.store.next_due_at()) is not None:
        clock.set(max(due, clock.now()))
        await outbox.run_due()


async def confirmed_withdrawal(kit: PartnerKit, token: str) -> str:
    async with kit.withdrawal(token, Money(Decimal("1.00"), "XAG")) as w:
        pass
    return w.mm_transaction_id


def test_default_schedule_is_the_documented_one() -> None:
    offsets = list(RetrySchedule().offsets_s())
    assert offsets == documented_offsets_s()
    assert len(offsets) == 9 + 47
    assert offsets[-1] <= 48 * HOUR_S < offsets[-1] + HOUR_S
    assert RetrySchedule().next_offset_after(3.2) == 5
    assert RetrySchedule().next_offset_after(offsets[-1]) is None


def test_attempts_follow_the_schedule_and_expire_after_48_hours(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("confirmWithdrawal", "timeout", times=10_000)
    kit = make_kit(wallet, db_path, clock)

    async def main() -> None:
        mm_id = await confirmed_withdrawal(kit, token)
        await drain(kit.outbox, clock)
        entry = await kit.store.get_entry("withdrawal", mm_id)
        assert entry is not None
        assert entry.state == "expired"
        assert entry.first_attempt_at is not None and entry.finished_at is not None
        assert entry.finished_at - entry.first_attempt_at <= 48 * HOUR_S
        assert "WalletTimeoutError" in (entry.last_error or "")
        logged = [a.at - entry.first_attempt_at for a in await kit.store.attempts(entry.id)]
        assert logged == documented_offsets_s()
        # The decision stays: the Query endpoint answers from it after the window.
        record = await kit.store.get_transaction("withdrawal", mm_id)
        assert record is not None and record.state == "confirmed"
        clock.advance(10 * HOUR_S)
        assert await kit.outbox.run_due() == 0
        await kit.aclose()

    asyncio.run(main())
    sent = [call.at for call in wallet.calls_to("confirmWithdrawal")]
    assert [t - sent[0] for t in sent] == documented_offsets_s()


def test_delivery_stops_at_the_first_acknowledgement(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("confirmWithdrawal", "http_500", times=6)
    kit = make_kit(wallet, db_path, clock)

    async def main() -> None:
        mm_id = await confirmed_withdrawal(kit, token)
        await drain(kit.outbox, clock)
        entry = await kit.store.get_entry("withdrawal", mm_id)
        assert entry is not None and entry.state == "delivered" and entry.attempts == 7
        assert entry.last_error is None
        await kit.aclose()

    asyncio.run(main())
    sent = [
        call.at - wallet.calls_to("confirmWithdrawal")[0].at
        for call in wallet.calls_to("confirmWithdrawal")
    ]
    assert sent == DOCUMENTED_START_S[:7]
    assert wallet.held("p") == 0


def test_definitive_refusal_is_not_retried(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00")
    wallet.fail_next("confirmWithdrawal", "error", error_code=131)
    kit = make_kit(wallet, db_path, clock)

    async def main() -> None:
        mm_id = await confirmed_withdrawal(kit, token)
        await drain(kit.outbox, clock)
        entry = await kit.store.get_entry("withdrawal", mm_id)
        assert entry is not None and entry.state == "failed"
        assert "TransactionDataMismatchError" in (entry.last_error or "")
        await kit.aclose()

    asyncio.run(main())
    assert len(wallet.calls_to("confirmWithdrawal")) == 1


def test_in_progress_and_credentials_errors_are_retried(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00")
    wallet.fail_next("confirmWithdrawal", "error", error_code=134)
    wallet.fail_next("confirmWithdrawal", "error", error_code=103)
    kit = make_kit(wallet, db_path, clock)

    async def main() -> None:
        mm_id = await confirmed_withdrawal(kit, token)
        await drain(kit.outbox, clock)
        entry = await kit.store.get_entry("withdrawal", mm_id)
        assert entry is not None and entry.state == "delivered" and entry.attempts == 3
        await kit.aclose()

    asyncio.run(main())


def test_outbox_survives_a_restart(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("confirmWithdrawal", "connect", times=4)

    async def first_process() -> str:
        kit = make_kit(wallet, db_path, clock)
        mm_id = await confirmed_withdrawal(kit, token)  # attempt 1 (fails)
        clock.set(clock.now() + 5)
        await kit.outbox.run_due()  # attempt 2 (fails)
        await kit.aclose()  # the process stops
        return mm_id

    mm_id = asyncio.run(first_process())
    clock.advance(2 * HOUR_S)  # down for two hours: the missed slots are not made up

    async def second_process() -> None:
        client = WalletClient("http://x", "partner", "secret", transport=wallet.transport)
        outbox = Outbox(SQLiteStore(db_path), client, clock=clock)
        assert await outbox.run_due() == 1  # attempt 3, picked up from the file (fails)
        await drain(outbox, clock)
        entry = await outbox.store.get_entry("withdrawal", mm_id)
        assert entry is not None and entry.state == "delivered" and entry.attempts == 5
        assert entry.first_attempt_at is not None
        times = [a.at - entry.first_attempt_at for a in await outbox.store.attempts(entry.id)]
        assert times == [0, 5, 5 + 2 * HOUR_S, 6495 + HOUR_S, 6495 + 2 * HOUR_S]
        await client.aclose()
        await outbox.store.close()

    asyncio.run(second_process())
    assert wallet.held("p") == 0


def test_schedule_is_configurable(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00")
    wallet.fail_next("rollbackWithdrawal", "timeout", times=100)
    schedule = RetrySchedule(delays_s=(1, 2), then_every_s=10, window_s=30)
    kit = make_kit(wallet, db_path, clock, schedule)

    async def main() -> None:
        w = kit.withdrawal(token, Money(Decimal("1.00"), "XAG"))
        async with w:
            w.rollback_on_exit()
        await drain(kit.outbox, clock)
        entry = await kit.store.get_entry("withdrawal", w.mm_transaction_id)
        assert entry is not None and entry.state == "expired"
        await kit.aclose()

    asyncio.run(main())
    sent = [
        c.at - wallet.calls_to("rollbackWithdrawal")[0].at
        for c in wallet.calls_to("rollbackWithdrawal")
    ]
    assert sent == [0, 1, 3, 13, 23]
