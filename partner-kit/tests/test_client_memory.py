"""WalletClient against the in-memory platform: every endpoint, every error code, exact money."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from qwallet_partner import (
    CurrencyMismatchError,
    ErrorCode,
    InMemoryWallet,
    InsufficientFundsError,
    InvalidAmountError,
    LimitExceededError,
    MalformedRequestError,
    Money,
    NotAllowedError,
    OtherError,
    OutcomeUnknownError,
    PlayerBlockedError,
    SessionExpiredError,
    TransactionConfirmedError,
    TransactionDataMismatchError,
    TransactionInProgressError,
    TransactionNotFoundError,
    TransactionRolledBackError,
    UnexpectedResponseError,
    UnknownSessionError,
    WalletAPIError,
    WalletClient,
    WalletConnectionError,
    WalletTimeoutError,
)

T = TypeVar("T")
XAG = "XAG"


def money(text: str) -> Money:
    return Money(Decimal(text), XAG)


def run(wallet: InMemoryWallet, body: Callable[[WalletClient], Awaitable[T]], **kw: Any) -> T:
    async def main() -> T:
        async with WalletClient(
            "http://platform.test",
            kw.pop("username", "partner"),
            kw.pop("password", "secret"),
            transport=wallet.transport,
            **kw,
        ) as client:
            return await body(client)

    return asyncio.run(main())


def test_verify_session_and_balance() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("518.00", player_id="p1", nickname="Ann", language="de")
    session = run(wallet, lambda c: c.verify_session(token))
    assert session.player_id == "p1"
    assert session.nickname == "Ann"
    assert session.language == "de"
    assert session.currency_code == XAG
    assert session.balance == money("518.00")
    assert run(wallet, lambda c: c.get_balance(token)) == money("518.00")


def test_withdraw_sends_exact_json_number_and_request_id() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("748.00")
    result = run(wallet, lambda c: c.withdraw(token, "1234abcd", money("230.00"), "Test Shopping."))
    call = wallet.calls_to("withdraw")[0]
    assert b'"amount":230.00' in call.body
    assert json.loads(call.body)["txDescription"] == "Test Shopping."
    assert call.request_id and len(call.request_id) >= 16
    assert result.mm_transaction_id == "1234abcd"
    assert result.balance == money("518.00")
    assert str(result.balance.amount) == "518.00"


def test_decimal_with_exponent_goes_out_plain() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("5000")
    run(wallet, lambda c: c.withdraw(token, "t1", Money(Decimal("1.0E+3"), XAG)))
    assert b'"amount":1000' in wallet.calls_to("withdraw")[0].body


def test_two_phase_calls_move_money() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("100.00", player_id="p")

    async def body(c: WalletClient) -> None:
        await c.withdraw(token, "w1", money("30.00"))
        assert wallet.available("p") == Decimal("70.00")
        assert wallet.held("p") == Decimal("30.00")
        await c.confirm_withdrawal(token, "w1", money("30.00"))
        assert wallet.held("p") == 0
        await c.withdraw(token, "w2", money("10.00"))
        result = await c.rollback_withdrawal(token, "w2", "item not delivered")
        assert result.balance == money("70.00")
        await c.deposit(token, "d1", money("5.50"), "bonus")
        assert wallet.available("p") == Decimal("70.00")
        assert wallet.pending_in("p") == Decimal("5.50")
        confirmed = await c.confirm_deposit(token, "d1", money("5.50"))
        assert confirmed.balance == money("75.50")
        await c.deposit(token, "d2", money("1.00"))
        await c.rollback_deposit(token, "d2")
        assert wallet.pending_in("p") == 0

    run(wallet, body)
    assert json.loads(wallet.calls_to("rollbackWithdrawal")[0].body)["rollbackReason"] == (
        "item not delivered"
    )
    assert "rollbackReason" not in json.loads(wallet.calls_to("rollbackDeposit")[0].body)


def test_replay_returns_first_answer() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("100.00")

    async def body(c: WalletClient) -> None:
        first = await c.withdraw(token, "w1", money("30.00"))
        await c.withdraw(token, "w2", money("10.00"))
        again = await c.withdraw(token, "w1", money("30.00"))
        assert again == first  # same qwTransactionId and the balance of the first answer
        c1 = await c.confirm_withdrawal(token, "w1", money("30.00"))
        assert await c.confirm_withdrawal(token, "w1", money("30.00")) == c1

    run(wallet, body)


@pytest.mark.parametrize(
    ("scenario", "expected", "code"),
    [
        ("insufficient", InsufficientFundsError, 121),
        ("currency", CurrencyMismatchError, 120),
        ("decimals", InvalidAmountError, 102),
        ("unknown_session", UnknownSessionError, 110),
        ("expired", SessionExpiredError, 111),
        ("blocked", PlayerBlockedError, 112),
        ("confirm_none", TransactionNotFoundError, 130),
        ("mismatch", TransactionDataMismatchError, 131),
        ("confirm_rolled_back", TransactionRolledBackError, 132),
        ("rollback_confirmed", TransactionConfirmedError, 133),
        ("late_original", TransactionRolledBackError, 132),
        ("other_player", TransactionNotFoundError, 130),
    ],
)
def test_business_errors(scenario: str, expected: type[WalletAPIError], code: int) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")
    other = wallet.add_player("10.00", player_id="q")

    async def body(c: WalletClient) -> None:
        if scenario == "insufficient":
            await c.withdraw(token, "w", money("10.01"))
        elif scenario == "currency":
            await c.withdraw(token, "w", Money(Decimal("1"), "EUR"))
        elif scenario == "decimals":
            await c.withdraw(token, "w", money("1.001"))
        elif scenario == "unknown_session":
            await c.get_balance("no-such-token")
        elif scenario == "expired":
            wallet.expire_session(token)
            await c.get_balance(token)
        elif scenario == "blocked":
            wallet.block_player("p")
            with pytest.raises(UnknownSessionError):  # blocking revoked the token
                await c.verify_session(token)
            await c.verify_session(wallet.add_session("p"))
        elif scenario == "confirm_none":
            await c.confirm_withdrawal(token, "w", money("1.00"))
        elif scenario == "mismatch":
            await c.withdraw(token, "w", money("1.00"))
            await c.withdraw(token, "w", money("2.00"))
        elif scenario == "confirm_rolled_back":
            await c.withdraw(token, "w", money("1.00"))
            await c.rollback_withdrawal(token, "w")
            await c.confirm_withdrawal(token, "w", money("1.00"))
        elif scenario == "rollback_confirmed":
            await c.withdraw(token, "w", money("1.00"))
            await c.confirm_withdrawal(token, "w", money("1.00"))
            await c.rollback_withdrawal(token, "w")
        elif scenario == "late_original":
            await c.rollback_withdrawal(token, "w", "withdraw timed out")
            await c.withdraw(token, "w", money("1.00"))
        elif scenario == "other_player":
            await c.withdraw(token, "w", money("1.00"))
            await c.confirm_withdrawal(other, "w", money("1.00"))

    with pytest.raises(expected) as info:
        run(wallet, body)
    assert info.value.code == code
    assert info.value.http_status == 200
    assert not info.value.retryable
    spent = Decimal("1.00") if scenario == "rollback_confirmed" else 0
    assert wallet.available("p") + wallet.held("p") == Decimal("10.00") - spent


def test_insufficient_funds_carries_balance() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("3.50")
    with pytest.raises(InsufficientFundsError) as info:
        run(wallet, lambda c: c.withdraw(token, "w", money("4.00")))
    assert info.value.balance == (Decimal("3.50"), XAG)


def test_confirm_and_rollback_accept_expired_session() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00", player_id="p")

    async def body(c: WalletClient) -> None:
        await c.withdraw(token, "w", money("1.00"))
        wallet.expire_session(token)
        await c.confirm_withdrawal(token, "w", money("1.00"))

    run(wallet, body)
    assert wallet.available("p") == Decimal("9.00")


def test_wrong_credentials_raise_not_allowed() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("1")
    with pytest.raises(NotAllowedError) as info:
        run(wallet, lambda c: c.get_balance(token), password="wrong")
    assert info.value.code == ErrorCode.NOT_ALLOWED == 103
    assert info.value.http_status == 401


@pytest.mark.parametrize(
    ("failure", "code", "expected"),
    [
        ("error", 101, MalformedRequestError),
        ("error", 122, LimitExceededError),
        ("error", 134, TransactionInProgressError),
        ("error", 100, OtherError),
        ("http_500", 100, OtherError),
        ("http_502", 0, UnexpectedResponseError),
        ("timeout", 0, WalletTimeoutError),
        ("connect", 0, WalletConnectionError),
    ],
)
def test_injected_failures_map_to_exceptions(
    failure: Any, code: int, expected: type[Exception]
) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00")
    wallet.fail_next("withdraw", failure, error_code=code)
    with pytest.raises(expected) as info:
        run(wallet, lambda c: c.withdraw(token, "w", money("1.00")))
    err = info.value
    assert isinstance(err, WalletAPIError | OutcomeUnknownError)
    if expected in (OtherError, TransactionInProgressError) or failure in ("timeout", "connect"):
        assert err.retryable
    if expected in (OtherError, UnexpectedResponseError, WalletTimeoutError):
        assert isinstance(err, OutcomeUnknownError)


def test_client_refuses_impossible_arguments_before_sending() -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00")
    for amount in (Decimal("0"), Decimal("-1"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError):
            run(wallet, lambda c, a=amount: c.withdraw(token, "w", Money(a, XAG)))
    with pytest.raises(ValueError):
        run(wallet, lambda c: c.withdraw(token, "x" * 65, money("1.00")))
    with pytest.raises(ValueError):
        run(wallet, lambda c: c.withdraw(token, "é", money("1.00")))
    with pytest.raises(TypeError):
        run(wallet, lambda c: c.withdraw(token, "w", Money(1.5, XAG)))  # type: ignore[arg-type]
    assert wallet.calls == []
