"""Exact money: currencies with a fixed number of decimals, amounts as integer minor units.

Amounts arrive as the text of a JSON number and never pass through ``float``: the text is
checked against the plain decimal grammar (no exponent, no ``NaN``), then scaled to minor units
with integer arithmetic. Anything that cannot be represented exactly is refused with 102.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from qwallet.domain.errors import ErrorCode, WalletError

MAX_SIGNIFICANT_DIGITS = 18
"""More significant digits than this are refused: 10**18 still fits a signed 64-bit column."""

# A JSON number without exponent. JSON itself forbids leading zeros ("01") and a bare ".5".
_PLAIN_NUMBER = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
# Any JSON number, including exponent forms, so they can be told apart from wrong JSON types.
_ANY_NUMBER = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class Currency:
    """A currency the platform holds wallets in.

    ``max_amount_minor`` caps a single transaction, ``max_balance_minor`` a wallet (what is
    available plus what is pending in).
    """

    code: str
    decimals: int
    max_amount_minor: int
    max_balance_minor: int

    def __post_init__(self) -> None:
        assert _CURRENCY_CODE.fullmatch(self.code), self.code
        assert 0 <= self.decimals <= 8, self.decimals
        assert 0 < self.max_amount_minor <= self.max_balance_minor < 10**18

    @property
    def scale(self) -> int:
        return int(10**self.decimals)


class AmountTypeError(ValueError):
    """The JSON value is not a number at all (a string, null, an object…): a malformed request."""


def is_json_number(raw: bytes) -> bool:
    return _ANY_NUMBER.fullmatch(raw) is not None


def parse_amount(raw: bytes, currency: Currency, *, maximum_minor: int | None = None) -> int:
    """Return the positive amount in minor units for the JSON number text ``raw``.

    Raises ``AmountTypeError`` when ``raw`` is not a JSON number, and ``WalletError(102)`` when it
    is a number the currency cannot hold exactly: zero or negative, exponent form, more decimals
    than the currency has, more than 18 significant digits, or above ``maximum_minor`` (default:
    the currency's maximum single amount).
    """
    maximum = currency.max_amount_minor if maximum_minor is None else maximum_minor
    raw = raw.strip()
    match = _PLAIN_NUMBER.fullmatch(raw)
    if match is None:
        if is_json_number(raw):
            raise WalletError(
                ErrorCode.INVALID_AMOUNT, "Amount must be written without an exponent."
            )
        raise AmountTypeError("amount must be a JSON number")
    text = raw.decode("ascii")
    if text.startswith("-"):
        raise WalletError(ErrorCode.INVALID_AMOUNT, "Amount must be greater than zero.")
    whole, _, fraction = text.partition(".")
    significant = (whole + fraction).lstrip("0")
    if len(significant) > MAX_SIGNIFICANT_DIGITS:
        raise WalletError(
            ErrorCode.INVALID_AMOUNT,
            f"Amount has more than {MAX_SIGNIFICANT_DIGITS} significant digits.",
        )
    # Trailing zeros carry no value: 230.000 is 230.00 for a two-decimal currency.
    fraction = fraction.rstrip("0")
    if len(fraction) > currency.decimals:
        raise WalletError(
            ErrorCode.INVALID_AMOUNT,
            f"{currency.code} allows at most {currency.decimals} decimals.",
        )
    minor = int(whole) * currency.scale + int(fraction.ljust(currency.decimals, "0") or "0")
    if minor <= 0:
        raise WalletError(ErrorCode.INVALID_AMOUNT, "Amount must be greater than zero.")
    if minor > maximum:
        raise WalletError(
            ErrorCode.INVALID_AMOUNT,
            f"Amount is above the maximum of {format_amount(maximum, currency)} {currency.code}.",
        )
    return minor


def parse_operator_amount(text: str, currency: Currency, *, allow_negative: bool = False) -> int:
    """Parse an amount an operator typed (CLI, console): same exact rules, sign optional."""
    sign = 1
    body = text.strip()
    if allow_negative and body.startswith("-"):
        sign, body = -1, body[1:]
    if body == "0" or body.strip("0.") == "":
        return 0
    raw = body.encode("ascii", "replace")
    return sign * parse_amount(raw, currency, maximum_minor=currency.max_balance_minor)


def format_amount(minor: int, currency: Currency) -> str:
    """The JSON number text for ``minor`` with exactly the currency's decimals (``230.00``)."""
    if currency.decimals == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), currency.scale)
    return f"{sign}{whole}.{fraction:0{currency.decimals}d}"


class CurrencyRegistry:
    """The currencies this platform is configured for, by code."""

    def __init__(self, currencies: list[Currency]) -> None:
        self._by_code = {currency.code: currency for currency in currencies}

    def get(self, code: str) -> Currency | None:
        return self._by_code.get(code)

    def __getitem__(self, code: str) -> Currency:
        return self._by_code[code]

    def __iter__(self) -> Iterator[Currency]:
        return iter(self._by_code.values())

    def codes(self) -> list[str]:
        return sorted(self._by_code)


def parse_currency_config(text: str) -> list[Currency]:
    """Parse ``CODE:DECIMALS[:MAX_AMOUNT[:MAX_BALANCE]]`` items separated by commas.

    Maxima are in major units. Defaults: 1,000,000 per transaction, 1,000,000,000 per wallet.
    """
    currencies = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if not 2 <= len(parts) <= 4:
            raise ValueError(f"bad currency item {item!r}: use CODE:DECIMALS[:MAX[:MAX_BALANCE]]")
        code, decimals = parts[0].upper(), int(parts[1])
        scale = 10**decimals
        max_amount = int(parts[2]) if len(parts) > 2 else 1_000_000
        max_balance = int(parts[3]) if len(parts) > 3 else 1_000_000_000
        currencies.append(Currency(code, decimals, max_amount * scale, max_balance * scale))
    if not currencies:
        raise ValueError("no currency configured")
    return currencies
