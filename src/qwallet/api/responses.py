"""JSON bodies of the Wallet API: success answers and the contract's error body.

Amounts are written as JSON numbers with exactly the currency's decimals (``230.00``); they are
spliced in as raw text so they never pass through ``float``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.domain.money import Currency, CurrencyRegistry, format_amount
from qwallet.store.port import BalanceView, MoneyResult, SessionView

_encode = msgspec.json.Encoder().encode


def amount_object(minor: int, currency: Currency) -> dict[str, Any]:
    return {
        "amount": msgspec.Raw(format_amount(minor, currency).encode()),
        "currencyCode": currency.code,
    }


def money_body(result: MoneyResult, currencies: CurrencyRegistry) -> bytes:
    return _encode(
        {
            "mmTransactionId": result.mm_transaction_id,
            "qwTransactionId": result.qw_transaction_id,
            "balance": amount_object(result.balance_minor, currencies[result.currency]),
        }
    )


def session_body(view: SessionView, currencies: CurrencyRegistry) -> bytes:
    return _encode(
        {
            "playerId": view.player_id,
            "nickname": view.nickname,
            "currencyCode": view.currency,
            "language": view.language,
            "balance": amount_object(view.available_minor, currencies[view.currency]),
        }
    )


def balance_body(view: BalanceView, currencies: CurrencyRegistry) -> bytes:
    return _encode({"balance": amount_object(view.available_minor, currencies[view.currency])})


def error_body(
    error: WalletError, currencies: CurrencyRegistry | None = None, currency_code: str | None = None
) -> bytes:
    body: dict[str, Any] = {"errorCode": int(error.code), "errorDescription": error.description}
    for key, value in error.extra.items():
        if key == "balance" and isinstance(value, int) and currencies and currency_code:
            currency = currencies.get(currency_code)
            if currency is not None:
                body["balance"] = amount_object(value, currency)
        elif key not in ("balance", "currency"):
            body[key] = value
    return _encode(body)


def plain_error(code: ErrorCode, description: str) -> bytes:
    return _encode({"errorCode": int(code), "errorDescription": description})
