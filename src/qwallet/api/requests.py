"""Wallet API request bodies: strict msgspec Structs (unknown fields refused, lengths checked).

``amount`` is kept as the raw JSON text (``msgspec.Raw``) and parsed exactly by
``qwallet.domain.money``; it never becomes a ``float``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

import msgspec

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


class Amount(msgspec.Struct, forbid_unknown_fields=True):
    amount: msgspec.Raw
    currencyCode: str


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token


class BeginRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    mmTransactionId: MmTransactionId
    amount: Amount
    txDescription: Text255 | None = None


class ConfirmRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    mmTransactionId: MmTransactionId
    amount: Amount


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    mmTransactionId: MmTransactionId
    rollbackReason: Text255 | None = None


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls)
    for cls in (TokenRequest, BeginRequest, ConfirmRequest, RollbackRequest)
}


def decode(body: bytes, cls: type[T]) -> T:
    """Decode ``body`` into ``cls``; every failure is a ``WalletError`` (101, or 102 for NaN)."""
    try:
        return _decoders[cls].decode(body)  # type: ignore[no-any-return]
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
