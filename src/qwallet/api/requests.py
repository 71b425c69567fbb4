"""Wallet API request bodies: strict msgspec Structs (unknown fields refused, lengths checked).

``amount`` is kept as the raw JSON text (``msgspec.Raw``) and parsed exactly by
``qwallet.domain.money``; it never becomes a ``float``.

Duplicate keys are refused (101) at any depth: msgspec keeps the last of two ``amount`` or
``mmTransactionId`` keys without a word, and a proxy or log reading the first would then see
another request than the one executed. msgspec cannot report them, and a second full parse would
double the cost of decoding, so the check counts instead: after a successful decode every field
present in the Structs came from at least one key, and in valid JSON a ``:`` outside a string is
always a key's, so ``body.count(b":")`` equal to the number of fields present proves there is no
duplicate (a C scan, tens of nanoseconds). Only a body with ``:`` inside a string value needs the
exact count: a regular expression that walks the string literals (docs/api.md has the figures).
Optional fields default to ``UNSET`` rather than None for that count: an explicit ``null`` is a
key too.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Protocol, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.domain.money import AmountTypeError, CurrencyRegistry, parse_amount

T = TypeVar("T")

# No string may hold U+0000: PostgreSQL cannot store it (the query fails), so it is refused as
# malformed (101) on both backends before it reaches a store.
NO_NUL = r"^[^\x00]*$"
Token = Annotated[str, msgspec.Meta(max_length=64, pattern=NO_NUL)]
MmTransactionId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x20-\x7e]+$")
]
Text255 = Annotated[str, msgspec.Meta(max_length=255, pattern=NO_NUL)]
# Bounded before any error description repeats it (120 names the code it does not know).
CurrencyCode = Annotated[str, msgspec.Meta(min_length=3, max_length=12)]


def _colons(value: str | UnsetType | None) -> int:
    return value.count(":") if isinstance(value, str) else 0


# Each request Struct tells ``has_duplicate_keys`` the keys its decoded value came from (the
# cheap part: the hot path needs only that) and, when asked, the ``:`` inside its decoded string
# values. The raw ``amount`` counts as no string: any ``:`` in it sends the check the exact way.


class Amount(msgspec.Struct, forbid_unknown_fields=True):
    amount: msgspec.Raw
    currencyCode: CurrencyCode


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token

    def keys(self) -> int:
        return 1

    def colons(self) -> int:
        return self.token.count(":")

    def raw_text(self) -> bytes:
        return b""


class BeginRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    mmTransactionId: MmTransactionId
    amount: Amount
    txDescription: Text255 | UnsetType | None = UNSET

    def keys(self) -> int:
        return 5 if self.txDescription is UNSET else 6

    def colons(self) -> int:
        return (
            self.token.count(":")
            + self.mmTransactionId.count(":")
            + self.amount.currencyCode.count(":")
            + _colons(self.txDescription)
        )

    def raw_text(self) -> bytes:
        return bytes(self.amount.amount)


class ConfirmRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    mmTransactionId: MmTransactionId
    amount: Amount

    def keys(self) -> int:
        return 5

    def colons(self) -> int:
        return (
            self.token.count(":")
            + self.mmTransactionId.count(":")
            + self.amount.currencyCode.count(":")
        )

    def raw_text(self) -> bytes:
        return bytes(self.amount.amount)


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    mmTransactionId: MmTransactionId
    rollbackReason: Text255 | UnsetType | None = UNSET

    def keys(self) -> int:
        return 2 if self.rollbackReason is UNSET else 3

    def colons(self) -> int:
        return (
            self.token.count(":") + self.mmTransactionId.count(":") + _colons(self.rollbackReason)
        )

    def raw_text(self) -> bytes:
        return b""


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls)
    for cls in (TokenRequest, BeginRequest, ConfirmRequest, RollbackRequest)
}


def decode(body: bytes, cls: type[T]) -> T:
    """Decode ``body`` into ``cls``; every failure is a ``WalletError`` (101, or 102 for NaN)."""
    try:
        value: T = _decoders[cls].decode(body)
    except msgspec.ValidationError as error:
        raise WalletError(ErrorCode.MALFORMED_REQUEST, f"Invalid request: {error}.") from None
    except UnicodeDecodeError:
        raise WalletError(ErrorCode.MALFORMED_REQUEST, "Body is not valid UTF-8.") from None
    except msgspec.DecodeError as error:
        if _has_non_finite_amount(body):
            raise WalletError(ErrorCode.INVALID_AMOUNT, "Amount must be a finite number.") from None
        raise WalletError(
            ErrorCode.MALFORMED_REQUEST, f"Body is not valid JSON: {error}."
        ) from None
    if has_duplicate_keys(body, value):  # type: ignore[arg-type]
        raise WalletError(ErrorCode.MALFORMED_REQUEST, DUPLICATE_KEYS)
    return value


DUPLICATE_KEYS = "Invalid request: a JSON object has the same key twice."

# A JSON string literal (escapes included), then the ``:`` that makes it a key, if any. Used only
# on valid JSON, where every ``"`` outside a string opens one, so matches never start inside one.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\r\n]*(:?)')


class Census(Protocol):
    def keys(self) -> int: ...

    def colons(self) -> int: ...

    def raw_text(self) -> bytes: ...


def has_duplicate_keys(body: bytes, value: Census) -> bool:
    """Whether the JSON text ``body``, already decoded into ``value``, repeats a key in one of
    its objects.

    Every ``:`` of valid JSON is a key's or inside a string, and each field present in ``value``
    came from at least one key: as many ``:`` as fields proves every key unique. Else, without a
    backslash in the body the strings are their decoded values, so the ``:`` beyond those inside
    the values are keys (exact: one key more than fields, or a ``:`` in a value that was
    overwritten, both mean a duplicate). With escapes, or ``:`` inside the raw amount, the string
    literals are walked instead.
    """
    fields = value.keys()
    colons = body.count(b":")
    if colons == fields:
        return False
    if b"\\" not in body and colons - value.colons() == fields:
        return False
    keys = _STRING.findall(body).count(b":")
    if keys == fields:
        return False
    # The raw amount is not looked into by the Structs: the keys of an object there are no
    # duplicates (it is refused later as not a number).
    raw = value.raw_text()
    return not raw or keys != fields + _STRING.findall(raw).count(b":")


def is_json_media_type(content_type: bytes | None) -> bool:
    """``application/json``, optionally with ``; charset=utf-8`` (case-insensitive); nothing
    else: no other media type, no other parameter, and a missing header is not JSON either."""
    if content_type == b"application/json":  # what nearly every client sends
        return True
    if content_type is None:
        return False
    media_type, semicolon, parameter = content_type.lower().partition(b";")
    if media_type.strip() != b"application/json":
        return False
    return not semicolon or parameter.strip() in (b"charset=utf-8", b'charset="utf-8"')


def _has_non_finite_amount(body: bytes) -> bool:
    """Whether the body is JSON except for a ``NaN``/``Infinity`` literal as the amount.

    Strict JSON has no such literals, but some serializers write them for non-finite floats;
    the contract answers those with 102 rather than a bare "malformed".
    """
    marker = object()
    try:
        document = json.loads(body, parse_constant=lambda _: marker)
    except (ValueError, RecursionError):
        return False
    amount = document.get("amount") if isinstance(document, dict) else None
    return isinstance(amount, dict) and amount.get("amount") is marker


def amount_minor(amount: Amount, currencies: CurrencyRegistry) -> tuple[int, str]:
    currency = currencies.get(amount.currencyCode)
    if currency is None:
        raise WalletError(
            ErrorCode.CURRENCY_MISMATCH, f"Currency {amount.currencyCode!r} is not supported."
        )
    try:
        return parse_amount(bytes(amount.amount), currency), currency.code
    except AmountTypeError:
        raise WalletError(
            ErrorCode.MALFORMED_REQUEST,
            "Invalid request: Expected `number` - at `$.amount.amount`.",
        ) from None
