"""Exact money: parsing JSON number text into minor units, and writing it back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.domain.money import (
    AmountTypeError,
    Currency,
    format_amount,
    parse_amount,
    parse_currency_config,
    parse_operator_amount,
)

XAG = Currency("XAG", 2, 1_000_000_00, 1_000_000_000_00)
JPY = Currency("JPY", 0, 10_000_000, 10_000_000_000)


@pytest.mark.parametrize(
    "text, minor",
    [
        (b"230.00", 23000),
        (b"230", 23000),
        (b"230.5", 23050),
        (b"0.01", 1),
        (b"230.000", 23000),  # trailing zeros carry no value
        (b"1000000", 100_000_000),
        (b" 1.10 ", 110),
    ],
)
def test_parses_exactly(text: bytes, minor: int) -> None:
    assert parse_amount(text, XAG) == minor


@pytest.mark.parametrize(
    "text, reason",
    [
        (b"0", "greater than zero"),
        (b"0.00", "greater than zero"),
        (b"-1", "greater than zero"),
        (b"1.001", "at most 2 decimals"),
        (b"2.3e2", "exponent"),
        (b"1E-2", "exponent"),
        (b"1000000.01", "maximum"),
        (b"1234567890123456789", "significant digits"),
    ],
)
def test_refuses_with_102(text: bytes, reason: str) -> None:
    with pytest.raises(WalletError) as caught:
        parse_amount(text, XAG)
    assert caught.value.code is ErrorCode.INVALID_AMOUNT
    assert reason in caught.value.description


@pytest.mark.parametrize("text", [b'"1.00"', b"null", b"true", b"{}", b"[]", b"01", b".5", b"1."])
def test_non_numbers_are_type_errors(text: bytes) -> None:
    with pytest.raises(AmountTypeError):
        parse_amount(text, XAG)


def test_zero_decimal_currency() -> None:
    assert parse_amount(b"500", JPY) == 500
    assert parse_amount(b"500.0", JPY) == 500
    with pytest.raises(WalletError):
        parse_amount(b"500.5", JPY)
    assert format_amount(500, JPY) == "500"


@given(st.integers(min_value=1, max_value=XAG.max_amount_minor))
def test_format_then_parse_round_trips(minor: int) -> None:
    text = format_amount(minor, XAG)
    assert len(text.split(".")[1]) == 2
    assert parse_amount(text.encode(), XAG) == minor


def test_format_negative_and_zero() -> None:
    assert format_amount(0, XAG) == "0.00"
    assert format_amount(-5, XAG) == "-0.05"
    assert format_amount(5180000, XAG) == "51800.00"


def test_operator_amounts() -> None:
    assert parse_operator_amount("-10.50", XAG, allow_negative=True) == -1050
    assert parse_operator_amount("0", XAG) == 0
    assert parse_operator_amount("5000000.00", XAG) == 500_000_000  # above a single amount
    with pytest.raises(WalletError):
        parse_operator_amount("-1", XAG)


def test_currency_config() -> None:
    currencies = parse_currency_config("XAG:2, btc:8:10:100")
    assert currencies[0] == Currency("XAG", 2, 100_000_000, 100_000_000_000)
    assert currencies[1].code == "BTC" and currencies[1].max_amount_minor == 10 * 10**8
    with pytest.raises(ValueError):
        parse_currency_config("XAG")
    with pytest.raises(ValueError):
        parse_currency_config("")
