"""Typed values of the Wallet API, as the partner sees them.

Amounts are ``decimal.Decimal`` end to end: decoded from the JSON number text and encoded back
as a JSON number with exactly the digits of the Decimal (``Decimal("230.00")`` → ``230.00``),
never through ``float``, because a binary float cannot hold most decimal amounts exactly.
"""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec

_CURRENCY_CODE = re.compile(r"[A-Z0-9]{3,8}")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,64}")

MAX_TOKEN_CHARS = 64
MAX_TEXT_CHARS = 255


class Money(msgspec.Struct, frozen=True, rename="camel"):
    """An amount in a currency: the contract's "Balance Amount" object.

    Build it from a string (``Money(Decimal("4.99"), "XAG")``); a Decimal built from a float
    carries the float's binary error and the platform refuses it with 102.
    """

    amount: Decimal
    currency_code: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency_code}"


class Session(msgspec.Struct, frozen=True, rename="camel"):
    """The answer of ``verifySession``. ``player_id`` is text even if the platform sent a number."""

    player_id: str
    nickname: str
    currency_code: str
    language: str
    balance: Money


class TransactionResult(msgspec.Struct, frozen=True, rename="camel"):
    """The answer of every successful money call (spec §1.4)."""

    mm_transaction_id: str
    qw_transaction_id: str
    balance: Money


def plain_decimal(value: Decimal) -> Decimal:
    """``value`` without an exponent, so it is written as ``1000.00`` rather than ``1.00000E+3``.

    Both are valid JSON numbers, but the platform's grammar (and many others) accepts only the
    plain form.
    """
    return Decimal(format(value, "f"))


def check_amount(money: Money) -> Money:
    """Refuse locally what can never be a valid amount, before anything is sent.

    The platform would answer 102, but refusing here keeps a flow from sending a ``withdraw``
    that is bound to fail (and the rollback that must follow it).
    """
    if not isinstance(money.amount, Decimal):
        raise TypeError(f"amount must be a decimal.Decimal, not {type(money.amount).__name__}")
    if not money.amount.is_finite() or money.amount <= 0:
        raise ValueError(f"amount must be a finite positive decimal, got {money.amount}")
    if not _CURRENCY_CODE.fullmatch(money.currency_code):
        raise ValueError(f"invalid currency code {money.currency_code!r}")
    return Money(plain_decimal(money.amount), money.currency_code)


def check_transaction_id(mm_transaction_id: str) -> str:
    if not _PRINTABLE_ASCII.fullmatch(mm_transaction_id):
        raise ValueError("mmTransactionId must be 1-64 printable ASCII characters")
    return mm_transaction_id


def check_token(token: str) -> str:
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"token must be 1-{MAX_TOKEN_CHARS} characters")
    return token


def check_text(text: str | None, name: str) -> str | None:
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{name} must be at most {MAX_TEXT_CHARS} characters")
    return text
