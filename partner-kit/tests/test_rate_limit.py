"""104 / HTTP 429: the client raises a retryable ``RateLimitedError`` carrying ``Retry-After``,
and the flows and the outbox send nothing again before it has passed."""

from __future__ import annotations

import asyncio
import email.utils
from decimal import Decimal
from pathlib import Path

import pytest

from kit_support import make_kit
from qwallet_partner import (
    FakeClock,
    InMemoryWallet,
    Money,
    OutcomeUnknownError,
    RateLimitedError,
    WalletClient,
)
from qwallet_partner._client import retry_after_seconds
from qwallet_partner._exceptions import MAX_RETRY_AFTER_S

ONE = Money(Decimal("1.00"), "XAG")


def test_429_is_a_retryable_rate_limited_error_with_retry_after() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("withdraw", "error", error_code=104, retry_after_s=7)

    async def main() -> None:
        async with WalletClient(
            "http://platform.test", "partner", "secret", transport=wallet.transport
        ) as client:
            await client.withdraw(token, "w", ONE)

    with pytest.raises(RateLimitedError) as info:
        asyncio.run(main())
    error = info.value
    assert (error.code, error.http_status, error.retry_after_s) == (104, 429, 7.0)
    assert error.retryable
    # The platform refused before processing: not an unknown outcome, and nothing was held.
    assert not isinstance(error, OutcomeUnknownError)
    assert wallet.held("p") == 0


def test_retry_after_header_forms() -> None:
    now = 1_780_000_000.0
    assert retry_after_seconds("5", now) == 5.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds(email.utils.formatdate(now + 120, usegmt=True), now) == 120.0
    assert retry_after_seconds(email.utils.formatdate(now - 120, usegmt=True), now) == 0.0
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-3", now) is None
    # A header asking for days is held to the cap.
    assert RateLimitedError(retry_after_s=10**9).retry_after_s == MAX_RETRY_AFTER_S


def test_outbox_waits_for_retry_after_before_sending_a_confirm_again(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("confirmWithdrawal", "error", error_code=104, retry_after_s=60)
    kit = make_kit(wallet, db_path, clock)

    async def main() -> None:
        async with kit.withdrawal(token, ONE) as flow:
            pass
        assert flow.outcome == "confirmed" and not flow.acknowledged
        entry = await kit.store.get_entry("withdrawal", flow.mm_transaction_id)
        assert entry is not None and entry.first_attempt_at is not None
        # The schedule's next slot is 5 s; the platform asked for 60 s: 60 s it is.
        assert entry.next_attempt_at == entry.first_attempt_at + 60
        clock.advance(59)
        assert await kit.outbox.run_due() == 0
        clock.advance(1)
        assert await kit.outbox.run_due() == 1
        entry = await kit.store.get_entry("withdrawal", flow.mm_transaction_id)
        assert entry is not None and entry.state == "delivered"
        await kit.aclose()

    asyncio.run(main())
    sent = [call.at for call in wallet.calls_to("confirmWithdrawal")]
    assert [at - sent[0] for at in sent] == [0, 60]
    assert wallet.held("p") == 0 and wallet.available("p") == Decimal("9.00")


def test_a_short_retry_after_keeps_the_documented_schedule(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00")
    wallet.fail_next("confirmWithdrawal", "error", error_code=104, retry_after_s=1)
    kit = make_kit(wallet, db_path, clock)

    async def main() -> None:
        async with kit.withdrawal(token, ONE) as flow:
            pass
        entry = await kit.store.get_entry("withdrawal", flow.mm_transaction_id)
        assert entry is not None and entry.first_attempt_at is not None
        assert entry.next_attempt_at == entry.first_attempt_at + 5
        await kit.aclose()

    asyncio.run(main())


def test_rate_limited_withdraw_is_rolled_back_only_after_retry_after(db_path: Path) -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("10.00", player_id="p")
    wallet.fail_next("withdraw", "error", error_code=104, retry_after_s=30)
    kit = make_kit(wallet, db_path, clock)

    async def main() -> str:
        flow = kit.withdrawal(token, ONE)
        with pytest.raises(RateLimitedError):
            async with flow:
                raise AssertionError("the block must not run")
        # The rollback the contract asks for is decided, durable, and not sent yet.
        assert flow.outcome == "rolled_back" and not flow.acknowledged
        assert wallet.calls_to("rollbackWithdrawal") == []
        entry = await kit.store.get_entry("withdrawal", flow.mm_transaction_id)
        assert entry is not None and entry.next_attempt_at == clock.now() + 30
        clock.advance(29)
        assert await kit.outbox.run_due() == 0
        clock.advance(1)
        assert await kit.outbox.run_due() == 1
        entry = await kit.store.get_entry("withdrawal", flow.mm_transaction_id)
        assert entry is not None and (entry.operation, entry.state) == ("rollback", "delivered")
        await kit.aclose()
        return flow.mm_transaction_id

    mm_id = asyncio.run(main())
    assert len(wallet.calls_to("withdraw")) == 1  # sent once, never repeated
    transaction = wallet.transaction("withdrawal", mm_id)
    assert transaction is not None and transaction.state == "rolled_back"  # blocks a late copy


def test_in_memory_wallet_rate_limits_like_the_platform() -> None:
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now, player_rate_limit=(1.0, 2))
    token = wallet.add_player("10.00")

    async def balance(client: WalletClient) -> Money:
        return await client.get_balance(token)

    async def main() -> None:
        async with WalletClient(
            "http://platform.test", "partner", "secret", transport=wallet.transport
        ) as client:
            await balance(client)
            await balance(client)
            with pytest.raises(RateLimitedError) as info:
                await balance(client)
            assert info.value.retry_after_s == 1.0
            clock.advance(1)
            assert await balance(client) == Money(Decimal("10.00"), "XAG")

    asyncio.run(main())
