"""The payment callback the platform sends to the partner (spec §2.3), byte for byte.

Fields: ``uid`` (the playerId), ``serverId``, ``cpOrderId``, ``productId``, ``productPrice``,
``extParams``, ``amount`` (the total charged, productPrice x productNumber, with the payment
currency's decimals: ``9.98``), ``currencyCode`` (``EUR``), ``provider`` (the method that paid:
``wallet`` or ``sandbox_card``), ``ts`` (milliseconds, fresh on every attempt) and ``sign`` —
uppercase hex MD5 of cpOrderId + serverId + uid + productPrice + productId + ts + secret, with the
numbers written exactly as the game sent them (the documented formula: ``amount``,
``currencyCode``, ``provider`` and ``extParams`` are not in it). The body is
``application/x-www-form-urlencoded`` unless the partner's ``callback_format`` is ``json``; in
JSON, ``serverId``, ``productPrice``, ``amount`` and ``ts`` are numbers with that same text.

Every callback also carries ``X-QW-Signature: t=<ms>,v1=<hex>``: HMAC-SHA256 keyed with the same
secret over ``"<t>."`` followed by the exact body, which, unlike ``sign``, covers every field
(``extParams``, ``amount``, ``currencyCode``, ``provider`` included) and expires with ``t``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import urlencode

SIGNATURE_HEADER = "X-QW-Signature"


def md5_sign(
    cp_order_id: str, server_id: str, uid: str, price: str, product_id: str, ts: str, secret: str
) -> str:
    # MD5 is what the contract prescribes: an integrity check, not a password hash.
    text = cp_order_id + server_id + uid + price + product_id + ts + secret
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest().upper()


def signature_header(body: bytes, secret: str, t_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{t_ms}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t_ms},v1={digest}"


@dataclass(frozen=True, slots=True)
class Callback:
    body: bytes
    headers: dict[str, str]


def build_callback(
    *,
    uid: str,
    server_id: str,
    cp_order_id: str,
    product_id: str,
    product_price: str,
    ext_params: str,
    amount: str,
    currency_code: str,
    provider: str,
    ts_ms: int,
    secret: str,
    body_format: str,
) -> Callback:
    ts = str(ts_ms)
    sign = md5_sign(cp_order_id, server_id, uid, product_price, product_id, ts, secret)
    fields = {
        "uid": uid,
        "serverId": server_id,
        "cpOrderId": cp_order_id,
        "productId": product_id,
        "productPrice": product_price,
        "extParams": ext_params,
        "amount": amount,
        "currencyCode": currency_code,
        "provider": provider,
        "ts": ts,
        "sign": sign,
    }
    body, content_type = encode_fields(fields, body_format)
    return Callback(
        body,
        {"Content-Type": content_type, SIGNATURE_HEADER: signature_header(body, secret, ts_ms)},
    )


JSON_NUMBERS: tuple[str, ...] = ("serverId", "productPrice", "amount", "ts")


def encode_fields(
    fields: dict[str, str], body_format: str, *, numbers: tuple[str, ...] = JSON_NUMBERS
) -> tuple[bytes, str]:
    """The body and its content type, as the platform writes a callback's ``fields``; in JSON,
    the fields named in ``numbers`` are written as numbers (their exact text)."""
    if body_format == "json":
        # Numbers are spliced in as their exact text; json.dumps would not keep "4.90".
        items = [
            f"{json.dumps(name)}: {value if name in numbers else json.dumps(value)}"
            for name, value in fields.items()
        ]
        return ("{" + ", ".join(items) + "}").encode(), "application/json"
    return urlencode(fields).encode(), "application/x-www-form-urlencoded"


def is_acknowledged(status: int, body: bytes) -> bool:
    """A 2xx whose body is ``success`` or the JSON object ``{"code": 0}``."""
    if not 200 <= status < 300:
        return False
    text = body.strip()
    if text == b"success":
        return True
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return type(code) is int and code == 0
