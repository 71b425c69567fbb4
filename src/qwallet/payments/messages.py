"""The purchase message a game posts to the platform page (spec §2.2), checked strictly.

The page forwards the message fields as JSON. Numbers are kept as their exact JSON text
(``msgspec.Raw``): the callback later signs ``serverId`` and ``productPrice`` exactly as the game
sent them, and the price is scaled to minor units without ever passing through ``float``.

Rules (ours where the documentation is silent):

- ``serverId`` a non-negative JSON number without exponent, at most 32 characters;
- ``cpOrderId`` and ``productId`` 1-64 characters, no control characters;
- ``productName`` at most 128 and ``productDesc`` at most 255 characters, both optional;
- ``productNumber`` an integer 1-10000, default 1;
- ``productPrice`` a JSON number > 0 with no more decimals than the payment currency has;
- ``extParams`` a string of at most 1024 characters, required (it may be empty);
- the amount charged is ``productPrice x productNumber``, at most the currency's maximum single
  amount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from qwallet.domain.errors import WalletError
from qwallet.domain.money import AmountTypeError, Currency, parse_amount
from qwallet.payments.errors import PaymentError

MAX_PRODUCT_NUMBER = 10_000
# A non-negative integer: the partner kit refuses any other serverId (a fraction would let
# characters shift between signed fields), so an order with one would be paid and never delivered.
_SERVER_ID = re.compile(rb"0|[1-9][0-9]*")
_INTEGER = re.compile(rb"[1-9][0-9]{0,4}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PurchaseMessage(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    server_id: msgspec.Raw
    cp_order_id: str
    product_id: str
    product_price: msgspec.Raw
    ext_params: str
    product_name: str | None = None
    product_desc: str | None = None
    # msgspec cannot combine Raw with None; an absent productNumber means 1.
    product_number: msgspec.Raw = msgspec.Raw(b"1")


@dataclass(frozen=True, slots=True)
class Purchase:
    """A validated purchase: exact texts for signing, minor units for charging."""

    server_id: str
    cp_order_id: str
    product_id: str
    product_name: str | None
    product_desc: str | None
    product_number: int
    product_price: str
    ext_params: str
    currency: str
    amount_minor: int


def _invalid(message: str) -> PaymentError:
    return PaymentError(400, "invalid_message", message)


def _text(name: str, value: str | None, max_chars: int, *, required: bool, ids: bool) -> None:
    if value is None:
        if required:
            raise _invalid(f"{name} is required.")
        return
    if required and ids and not value:
        raise _invalid(f"{name} must not be empty.")
    if len(value) > max_chars:
        raise _invalid(f"{name} must be at most {max_chars} characters.")
    if "\x00" in value:  # PostgreSQL cannot store U+0000
        raise _invalid(f"{name} must not contain U+0000.")
    if ids and _CONTROL.search(value):
        raise _invalid(f"{name} must not contain control characters.")


def validate_purchase(message: PurchaseMessage, currency: Currency) -> Purchase:
    server_id = bytes(message.server_id).strip()
    if len(server_id) > 32 or not _SERVER_ID.fullmatch(server_id):
        raise _invalid("serverId must be a non-negative integer (digits only, at most 32).")
    _text("cpOrderId", message.cp_order_id, 64, required=True, ids=True)
    _text("productId", message.product_id, 64, required=True, ids=True)
    _text("productName", message.product_name, 128, required=False, ids=False)
    _text("productDesc", message.product_desc, 255, required=False, ids=False)
    _text("extParams", message.ext_params, 1024, required=True, ids=False)
    raw_number = bytes(message.product_number).strip()
    if not _INTEGER.fullmatch(raw_number) or int(raw_number) > MAX_PRODUCT_NUMBER:
        raise _invalid(f"productNumber must be an integer from 1 to {MAX_PRODUCT_NUMBER}.")
    number = int(raw_number)
    price = bytes(message.product_price).strip()
    if len(price) > 32:
        raise _invalid("productPrice is too long.")
    try:
        price_minor = parse_amount(price, currency)
    except AmountTypeError:
        raise _invalid("productPrice must be a number.") from None
    except WalletError as error:
        raise _invalid(f"productPrice: {error.description}") from None
    amount_minor = price_minor * number
    if amount_minor > currency.max_amount_minor:
        raise _invalid("productPrice x productNumber is above the maximum single amount.")
    return Purchase(
        server_id=server_id.decode(),
        cp_order_id=message.cp_order_id,
        product_id=message.product_id,
        product_name=message.product_name,
        product_desc=message.product_desc,
        product_number=number,
        product_price=price.decode(),
        ext_params=message.ext_params,
        currency=currency.code,
        amount_minor=amount_minor,
    )
