"""JSON bodies of the Wallet API: success answers and the contract's error body.

Amounts are written as JSON numbers with exactly the currency's decimals (``230.00``); they are
spliced in as raw text so they never pass through ``float``.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


# -- writing an answer ----------------------------------------------------------------------------


class _CoalescingTransport:
    """Hands the writes of one event-loop step to the real transport as one.

    uvicorn writes a response's head and its body separately: two ``send()`` calls, two TCP
    segments (``TCP_NODELAY``) and so two wake-ups of the client for every answer. Buffered until
    the end of the loop step they go out in one. Everything else is the real transport's.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, each answer written in one ``send()``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CoalescingTransport(transport, self.loop)))
