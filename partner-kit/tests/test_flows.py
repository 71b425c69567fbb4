"""Withdrawal and deposit flows against the in-memory platform."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from kit_support import make_kit
from qwallet_partner import (
    FakeClock,
    FlowError,
    InMemoryWallet,
    InsufficientFundsError,
    Money,
    OtherError,
    PartnerKit,
    UnexpectedResponseError,
    WalletConnectionError,
    WalletTimeoutError,
)

XAG = "XAG"


def money(text: str) -> Money:
    return Money(Decimal(text), XAG)


class ItemOutOfStock(Exception):
    pass


def test_success_confirms(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    kit = make_kit(wallet, db_path, FakeClock())

    async def main() -> str:
        async with kit.withdrawal(token, money("4.99"), "Sword") as w:
            assert w.result is not None
            assert w.result.balance == money("5.01")
            assert wallet.held("p") == Decimal("4.99")
            record = await kit.store.get_transaction("withdrawal", w.mm_transaction_id)
            assert record is not None and record.state == "pending"
        assert w.outcome == "confirmed" and w.acknowledged
        record = await kit.store.get_transaction("withdrawal", w.mm_transaction_id)
        assert record is not None and record.state == "confirmed"
        assert record.qw_transaction_id == w.result.qw_transaction_id
        entry = await kit.store.get_entry("withdrawal", w.mm_transaction_id)
        assert entry is not None and entry.state == "delivered" and entry.attempts == 1
        await kit.aclose()
        return w.mm_transaction_id

    mm_id = asyncio.run(main())
    assert wallet.available("p") == Decimal("5.01")
    assert wallet.held("p") == 0
    transaction = wallet.transaction("withdrawal", mm_id)
    assert transaction is not None and transaction.state == "confirmed"


def test_exception_in_block_rolls_back_and_propagates(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    kit = make_kit(wallet, db_path, FakeClock())

    async def main() -> str:
        w = kit.withdrawal(token, money("4.99"), "Sword")
        with pytest.raises(ItemOutOfStock):
            async with w:
                raise ItemOutOfStock
        assert w.outcome == "rolled_back" and w.acknowledged
        await kit.aclose()
        return w.mm_transaction_id

    mm_id = asyncio.run(main())
    transaction = wallet.transaction("withdrawal", mm_id)
    assert transaction is not None and transaction.state == "rolled_back"
    assert wallet.available("p") == Decimal("10.00")
    assert b"ItemOutOfStock" in wallet.calls_to("rollbackWithdrawal")[0].body


def test_rollback_on_exit_without_exception(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    kit = make_kit(wallet, db_path, FakeClock())

    async def main() -> None:
        async with kit.withdrawal(token, money("1.00")) as w:
            w.rollback_on_exit("Sold out.")
        assert w.outcome == "rolled_back"
        await kit.aclose()

    asyncio.run(main())
    assert b"Sold out." in wallet.calls_to("rollbackWithdrawal")[0].body
    assert wallet.available("p") == Decimal("10.00")


@pytest.mark.parametrize(
    ("failure", "apply", "expected"),
    [
        ("timeout", True, WalletTimeoutError),  # applied, answer lost
        ("timeout", False, WalletTimeoutError),  # never arrived
        ("http_500", True, OtherError),
        ("http_502", False, UnexpectedResponseError),
        ("connect", False, WalletConnectionError),
    ],
)
def test_unknown_outcome_of_withdraw_rolls_back(
    db_path: Path, failure: str, apply: bool, expected: type[Exception]
) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("withdraw", failure, apply=apply)  # type: ignore[arg-type]
    kit = make_kit(wallet, db_path, FakeClock())
    body_ran = False

    async def main() -> str:
        nonlocal body_ran
        w = kit.withdrawal(token, money("3.00"))
        with pytest.raises(expected):
            async with w:
                body_ran = True
        await kit.aclose()
        return w.mm_transaction_id

    mm_id = asyncio.run(main())
    assert not body_ran
    assert len(wallet.calls_to("withdraw")) == 1  # never re-sent
    assert len(wallet.calls_to("rollbackWithdrawal")) == 1
    transaction = wallet.transaction("withdrawal", mm_id)
    assert transaction is not None and transaction.state == "rolled_back"
    assert wallet.available("p") == Decimal("10.00") and wallet.held("p") == 0


def test_refused_withdraw_still_rolls_back(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("1.00", player_id="p")
    kit = make_kit(wallet, db_path, FakeClock())

    async def main() -> None:
        with pytest.raises(InsufficientFundsError):
            async with kit.withdrawal(token, money("3.00")):
                pass
        await kit.aclose()

    asyncio.run(main())
    assert len(wallet.calls_to("rollbackWithdrawal")) == 1


def test_flow_runs_once(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00")
    kit = make_kit(wallet, db_path, FakeClock())

    async def main() -> None:
        w = kit.withdrawal(token, money("1.00"))
        async with w:
            pass
        with pytest.raises(FlowError):
            async with w:
                pass
        await kit.aclose()

    asyncio.run(main())
    assert len(wallet.calls_to("withdraw")) == 1


def test_bad_arguments_refused_before_anything_is_sent(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00")
    kit = make_kit(wallet, db_path, FakeClock())
    with pytest.raises(ValueError):
        kit.withdrawal(token, money("0"))
    with pytest.raises(ValueError):
        kit.deposit(token, money("1"), "x" * 256)
    asyncio.run(kit.aclose())
    assert wallet.calls == []


def test_generated_ids_are_unique_and_valid(db_path: Path) -> None:
    wallet = InMemoryWallet()
    kit = make_kit(wallet, db_path, FakeClock())
    kit_prefixed = PartnerKit(kit.client, kit.store, id_prefix="shop-")
    ids = {kit.new_transaction_id() for _ in range(1000)}
    assert len(ids) == 1000
    prefixed = kit_prefixed.new_transaction_id()
    assert prefixed.startswith("shop-") and len(prefixed) <= 64 and prefixed.isascii()
    asyncio.run(kit.aclose())


def test_cancellation_rolls_back_through_the_worker(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    kit = make_kit(wallet, db_path, FakeClock())
    entered = asyncio.Event()
    flow_ids: list[str] = []

    async def buy() -> None:
        async with kit.withdrawal(token, money("2.00")) as w:
            flow_ids.append(w.mm_transaction_id)
            entered.set()
            await asyncio.Event().wait()  # stuck until cancelled

    async def main() -> None:
        task = asyncio.create_task(buy())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = await kit.store.get_transaction("withdrawal", flow_ids[0])
        assert record is not None and record.state == "rolled_back"
        assert wallet.calls_to("rollbackWithdrawal") == []  # not sent from a cancelled task
        assert await kit.outbox.run_due() == 1
        await kit.aclose()

    asyncio.run(main())
    assert wallet.available("p") == Decimal("10.00")


def test_confirm_not_acknowledged_inline_is_retried(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    clock = FakeClock()
    kit = make_kit(wallet, db_path, clock)
    wallet.fail_next("confirmWithdrawal", "timeout")

    async def main() -> None:
        async with kit.withdrawal(token, money("2.00")) as w:
            pass
        assert w.outcome == "confirmed" and not w.acknowledged
        assert await kit.outbox.run_due() == 0  # next attempt is 5 s later
        clock.advance(5)
        assert await kit.outbox.run_due() == 1
        entry = await kit.store.get_entry("withdrawal", w.mm_transaction_id)
        assert entry is not None and entry.state == "delivered" and entry.attempts == 2
        await kit.aclose()

    asyncio.run(main())
    assert wallet.held("p") == 0 and wallet.available("p") == Decimal("8.00")


def test_deposit_flow(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("0.00", player_id="p")
    kit = make_kit(wallet, db_path, FakeClock())

    async def main() -> None:
        async with kit.deposit(token, money("7.25"), "Daily bonus") as d:
            assert wallet.pending_in("p") == Decimal("7.25")
        assert d.outcome == "confirmed"
        with pytest.raises(ItemOutOfStock):
            async with kit.deposit(token, money("1.00")):
                raise ItemOutOfStock
        await kit.aclose()

    asyncio.run(main())
    assert wallet.available("p") == Decimal("7.25")
    assert wallet.pending_in("p") == 0
    assert len(wallet.calls_to("confirmDeposit")) == 1
    assert len(wallet.calls_to("rollbackDeposit")) == 1


def test_worker_rolls_back_what_a_dead_process_left(db_path: Path) -> None:
    """A process sent withdraw, then died before deciding: the next one rolls it back."""
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    clock = FakeClock()

    async def died() -> str:
        kit = make_kit(wallet, db_path, clock)
        w = kit.withdrawal(token, money("2.00"))
        await w.__aenter__()  # the block starts, then the process is gone
        await kit.client.aclose()
        await kit.store.close()
        return w.mm_transaction_id

    mm_id = asyncio.run(died())
    assert wallet.held("p") == Decimal("2.00")

    async def restarted() -> None:
        kit = make_kit(wallet, db_path, clock)
        assert await kit.outbox.recover() == 0  # too early: it may still be running
        clock.advance(kit.outbox.abandon_after_s + 1)
        assert await kit.outbox.recover() == 1
        await kit.outbox.run_due()
        await kit.aclose()

    asyncio.run(restarted())
    transaction = wallet.transaction("withdrawal", mm_id)
    assert transaction is not None and transaction.state == "rolled_back"
    assert wallet.available("p") == Decimal("10.00")


def test_background_worker_delivers(db_path: Path) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("confirmWithdrawal", "http_500", times=3)

    async def main() -> None:
        async with make_kit(wallet, db_path, FakeClock()) as kit:
            async with kit.withdrawal(token, money("2.00")) as w:
                pass
            for _ in range(200):
                entry = await kit.store.get_entry("withdrawal", w.mm_transaction_id)
                assert entry is not None
                if entry.state == "delivered":
                    break
                await asyncio.sleep(0.01)
            assert entry.state == "delivered" and entry.attempts == 4

    asyncio.run(main())
    assert wallet.held("p") == 0
