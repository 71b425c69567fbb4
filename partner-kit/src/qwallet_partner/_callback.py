"""The payment-callback receiver (spec §2.3): the platform tells the studio an order was paid.

``PaymentCallbackApp`` is an ASGI app the studio mounts at its registered callback URL. For each
``POST`` it:

1. reads at most ``max_body_bytes`` of body;
2. requires and verifies ``X-QW-Signature`` (HMAC-SHA256 over the whole body). Only with
   ``accept_md5_only=True`` may it be absent; when present it is always verified;
3. parses the body — ``application/x-www-form-urlencoded`` by default, or JSON — into the eight
   documented fields ``uid, serverId, cpOrderId, productId, productPrice, extParams, ts, sign``
   and the three the platform sends after ``extParams``: ``amount`` (the total charged),
   ``currencyCode`` and ``provider`` (required, except in MD5-only mode). Every value is kept
   exactly as sent (a JSON number keeps its text: ``4.90`` stays ``4.90``); a missing, repeated
   or unknown field is refused, and so is a ``serverId`` that is not digits only or a
   ``productPrice``/``amount`` that is not a plain decimal;
4. checks ``sign`` = uppercase hex MD5 of cpOrderId + serverId + uid + productPrice + productId
   + ts + secret (no separators);
5. refuses a ``ts`` (milliseconds) more than ``window_s`` away from now, in either direction;
6. asks the studio's ``issued_order(cpOrderId)`` lookup for the order it issued, and refuses an
   order it never issued, one issued to another ``uid``, and one whose product, price, amount
   or currency differ from what it issued;
7. delivers each cpOrderId once: the first call runs the studio's ``deliver`` hook, records the
   delivery durably, and only then answers ``success`` (text/plain); a later call with the same
   data answers ``success`` without running the hook; the same cpOrderId with different data is
   refused (409).

Why the header is required by default: the documented MD5 joins the fields with no separators,
so characters moved across a field boundary (the tail of ``cpOrderId`` into ``serverId``) keep
the same ``sign`` while naming another order, and it covers neither ``extParams`` nor the
amount, currency and provider. Steps 3 and 6 refuse such shifted callbacks even in MD5-only
mode, but only the header authenticates the whole body.

The ``X-QW-Signature`` header (our extension; the platform produces the same)::

    X-QW-Signature: t=<unix time in ms>,v1=<hex HMAC-SHA256>

where the HMAC key is the shared secret (UTF-8) and the message is ``"<t>."`` followed by the
exact raw request body. Several ``v1=`` items may be sent (one per secret during a rotation);
one match is enough. ``t`` is held to the same window as ``ts``.

Refusals answer JSON ``{"error": <reason code>, "message": <text>}``, deliver nothing and record
nothing (the genuine callback can still arrive): 400 ``malformed`` / ``stale`` / ``future``,
403 ``missing_signature`` / ``bad_signature`` / ``bad_sign``, 405, 409 ``conflict``, 413
``too_large``, 422 ``not_issued`` (unknown cpOrderId, or issued to another uid: one answer for
both) / ``order_mismatch``; a failing lookup or hook answers 500 and a delivery in progress
503, both of which the platform retries.

Delivery is at-least-once across a crash between the hook's return and the record's commit, so
the hook should itself be idempotent by cpOrderId (the order id is a natural unique key).
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from qwallet_partner._clock import Clock, SystemClock
from qwallet_partner._http import BodyTooLarge, lifespan, read_body
from qwallet_partner._signing import SIGNATURE_HEADER, hmac_hex, payment_sign, signature_header
from qwallet_partner._store import (
    DeliveryHook,
    IssuedOrder,
    IssuedOrderLookup,
    KitStore,
    PaymentOrder,
)

__all__ = [
    "DeliveryHook",
    "IssuedOrderLookup",
    "PaymentCallbackApp",
    "payment_sign",
    "signature_header",
]

logger = logging.getLogger("qwallet.partner.callback")

BodyFormat = Literal["form", "json", "auto"]

DOCUMENTED_FIELDS = (
    "uid",
    "serverId",
    "cpOrderId",
    "productId",
    "productPrice",
    "extParams",
    "ts",
    "sign",
)
PAYMENT_FIELDS = ("amount", "currencyCode", "provider")
"""Sent by the platform after ``extParams``; covered by ``X-QW-Signature``, not by ``sign``."""
FIELDS = DOCUMENTED_FIELDS + PAYMENT_FIELDS
MAX_VALUE_CHARS = 1024

_JSON_NUMBER = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_MD5_HEX = re.compile(r"[0-9A-Fa-f]{32}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Digits only (what an integer JSON number can be): a letter moved in from cpOrderId is refused.
_SERVER_ID = re.compile(r"0|[1-9][0-9]{0,31}")
# A plain decimal, as the platform writes prices and amounts (no sign, no exponent).
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,12})?")
_CURRENCY_CODE = re.compile(r"[A-Z0-9]{3,12}")
_PROVIDER = re.compile(r"[a-z0-9_]{1,32}")


class _Rejection(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        self.status = status
        self.error = error
        self.message = message
        super().__init__(message)


class PaymentCallbackApp:
    """ASGI app receiving the platform's payment callbacks (see the module docstring)."""

    def __init__(
        self,
        store: KitStore,
        secret: str | Sequence[str],
        deliver: DeliveryHook,
        *,
        issued_order: IssuedOrderLookup,
        body_format: BodyFormat = "form",
        window_s: float = 600.0,
        accept_md5_only: bool = False,
        clock: Clock | None = None,
        max_body_bytes: int = 16 * 1024,
        hook_timeout_s: float = 30.0,
        lease_s: float = 120.0,
    ) -> None:
        self.secrets = (secret,) if isinstance(secret, str) else tuple(secret)
        assert self.secrets and all(self.secrets), "a non-empty shared secret is needed"
        # A claim must outlive the hook, or a retry could deliver the same order twice.
        assert lease_s > hook_timeout_s > 0
        self.store = store
        self.deliver = deliver
        self.issued_order = issued_order
        self.body_format = body_format
        self.window_s = window_s
        # The risky choice has a name that says so: without the header, nothing authenticates
        # extParams, amount, currencyCode and provider, and ``sign`` has no field boundaries.
        self.accept_md5_only = accept_md5_only
        self.clock: Clock = clock or SystemClock()
        self.max_body_bytes = max_body_bytes
        self.hook_timeout_s = hook_timeout_s
        self.lease_s = lease_s
        # In-process guard on top of the store's claim: concurrent duplicates wait, not fail.
        self._locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        assert scope["type"] == "http"
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        try:
            order = await self._verified_order(request)
            await self._check_issued(order)
            return await self._deliver_once(order)
        except _Rejection as rejection:
            logger.warning("payment callback rejected: %s (%s)", rejection.error, rejection)
            headers = {"Allow": "POST"} if rejection.status == 405 else None
            if rejection.status == 503:
                headers = {"Retry-After": "5"}
            return JSONResponse(
                {"error": rejection.error, "message": rejection.message},
                status_code=rejection.status,
                headers=headers,
            )

    async def _verified_order(self, request: Request) -> PaymentOrder:
        if request.method != "POST":
            raise _Rejection(405, "method_not_allowed", "Only POST is allowed.")
        try:
            body = await read_body(request, self.max_body_bytes)
        except BodyTooLarge:
            raise _Rejection(
                413, "too_large", f"Body larger than {self.max_body_bytes} bytes."
            ) from None
        now_ms = int(self.clock.now() * 1000)
        header = request.headers.get(SIGNATURE_HEADER)
        if header is not None:
            self._check_header(header, body, now_ms)
        elif not self.accept_md5_only:
            raise _Rejection(403, "missing_signature", f"{SIGNATURE_HEADER} header is required.")
        fields = self._parse(request.headers.get("content-type", ""), body)
        ts = fields["ts"]
        if not ts.isascii() or not ts.isdigit() or len(ts) > 16:
            raise _Rejection(400, "malformed", "ts must be a Unix time in milliseconds.")
        expected = [
            payment_sign(
                fields["cpOrderId"],
                fields["serverId"],
                fields["uid"],
                fields["productPrice"],
                fields["productId"],
                ts,
                secret,
            )
            for secret in self.secrets
        ]
        if not _MD5_HEX.fullmatch(fields["sign"]) or not _any_equal(
            fields["sign"].upper(), expected
        ):
            raise _Rejection(403, "bad_sign", "sign does not match the order and the secret.")
        self._check_time(int(ts), now_ms, "ts")
        return PaymentOrder(
            cp_order_id=fields["cpOrderId"],
            uid=fields["uid"],
            server_id=fields["serverId"],
            product_id=fields["productId"],
            product_price=fields["productPrice"],
            ext_params=fields["extParams"],
            ts_ms=int(ts),
            amount=fields.get("amount"),
            currency_code=fields.get("currencyCode"),
            provider=fields.get("provider"),
            header_signed=header is not None,
        )

    def _check_header(self, header: str, body: bytes, now_ms: int) -> None:
        t_text: str | None = None
        signatures: list[str] = []
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key == "t" and t_text is None:
                t_text = value
            elif key == "v1":
                signatures.append(value)
        if t_text is None or not t_text.isascii() or not t_text.isdigit() or len(t_text) > 16:
            raise _Rejection(403, "bad_signature", f"{SIGNATURE_HEADER}: no valid t=.")
        if not signatures or not all(_SHA256_HEX.fullmatch(s) for s in signatures):
            raise _Rejection(403, "bad_signature", f"{SIGNATURE_HEADER}: no valid v1=.")
        t_ms = int(t_text)
        expected = [hmac_hex(secret, t_ms, body) for secret in self.secrets]
        if not any(_any_equal(signature, expected) for signature in signatures):
            raise _Rejection(403, "bad_signature", f"{SIGNATURE_HEADER} does not match the body.")
        self._check_time(t_ms, now_ms, "t")

    def _check_time(self, t_ms: int, now_ms: int, name: str) -> None:
        window_ms = int(self.window_s * 1000)
        if t_ms < now_ms - window_ms:
            raise _Rejection(400, "stale", f"{name} is older than {self.window_s:g} s.")
        if t_ms > now_ms + window_ms:
            raise _Rejection(400, "future", f"{name} is more than {self.window_s:g} s ahead.")

    def _parse(self, content_type: str, body: bytes) -> dict[str, str]:
        media_type = content_type.split(";", 1)[0].strip().lower()
        use_json = self.body_format == "json" or (
            self.body_format == "auto" and media_type == "application/json"
        )
        pairs = _json_pairs(body) if use_json else _form_pairs(body)
        fields: dict[str, str] = {}
        for key, value in pairs:
            if key not in FIELDS:
                raise _Rejection(400, "malformed", f"unknown field {key!r}.")
            if key in fields:
                raise _Rejection(400, "malformed", f"field {key!r} appears twice.")
            if len(value) > MAX_VALUE_CHARS:
                raise _Rejection(400, "malformed", f"field {key!r} is too long.")
            fields[key] = value
        # Callbacks from before the platform sent amount/currencyCode/provider: MD5-only mode.
        required = DOCUMENTED_FIELDS if self.accept_md5_only else FIELDS
        missing = [name for name in required if name not in fields]
        if missing:
            raise _Rejection(400, "malformed", f"missing field(s): {', '.join(missing)}.")
        for name in ("uid", "serverId", "cpOrderId", "productId", "productPrice"):
            if not fields[name]:
                raise _Rejection(400, "malformed", f"field {name!r} is empty.")
        if not _SERVER_ID.fullmatch(fields["serverId"]):
            raise _Rejection(400, "malformed", "serverId must be digits only (at most 32).")
        checks = (
            ("productPrice", _DECIMAL, "a plain decimal number"),
            ("amount", _DECIMAL, "a plain decimal number"),
            ("currencyCode", _CURRENCY_CODE, "3-12 capital letters or digits"),
            ("provider", _PROVIDER, "1-32 lowercase letters, digits or _"),
        )
        for name, pattern, what in checks:
            if name in fields and not pattern.fullmatch(fields[name]):
                raise _Rejection(400, "malformed", f"{name} must be {what}.")
        return fields

    async def _check_issued(self, order: PaymentOrder) -> None:
        """Refuse an order the studio did not issue to this player, or not for this sale.

        Runs before the claim, so a refusal records nothing: the genuine callback of the same
        cpOrderId is still delivered when it comes.
        """
        try:
            found = self.issued_order(order.cp_order_id)
            issued = await found if inspect.isawaitable(found) else found
        except Exception as exc:
            logger.exception("issued-order lookup failed for cpOrderId %s", order.cp_order_id)
            raise _Rejection(500, "lookup_failed", "Order lookup failed; retry later.") from exc
        if issued is None or not hmac.compare_digest(issued.uid.encode(), order.uid.encode()):
            # One answer for "never issued" and "issued to someone else": no oracle for ids.
            logger.warning(
                "cpOrderId %s for uid %s: %s",
                order.cp_order_id,
                order.uid,
                "never issued" if issued is None else f"issued to {issued.uid}",
            )
            raise _Rejection(422, "not_issued", "cpOrderId was not issued to this uid.")
        mismatches = _mismatches(issued, order)
        if mismatches:
            logger.warning(
                "cpOrderId %s differs from the issued order: %s", order.cp_order_id, mismatches
            )
            raise _Rejection(
                422,
                "order_mismatch",
                f"{', '.join(mismatches)} differ(s) from the order issued.",
            )

    async def _deliver_once(self, order: PaymentOrder) -> Response:
        lock = self._locks.setdefault(order.cp_order_id, asyncio.Lock())
        try:
            async with lock:
                return await self._deliver_locked(order)
        finally:
            if not lock.locked():
                self._locks.pop(order.cp_order_id, None)

    async def _deliver_locked(self, order: PaymentOrder) -> Response:
        claim = await self.store.claim_payment(order, self.clock.now(), self.lease_s)
        if claim == "delivered":
            return PlainTextResponse("success")
        if claim == "conflict":
            raise _Rejection(409, "conflict", "cpOrderId was already received with different data.")
        if claim == "busy":
            raise _Rejection(503, "in_progress", "This order is being delivered; retry later.")
        try:
            async with asyncio.timeout(self.hook_timeout_s):
                outcome = self.deliver(order)
                if inspect.isawaitable(outcome):
                    await outcome
        except BaseException as exc:
            await self.store.release_payment(order.cp_order_id)
            if not isinstance(exc, Exception):
                raise
            logger.exception("delivery hook failed for cpOrderId %s", order.cp_order_id)
            raise _Rejection(500, "delivery_failed", "Delivery failed; retry later.") from exc
        await self.store.complete_payment(order.cp_order_id, self.clock.now())
        return PlainTextResponse("success")


def _mismatches(issued: IssuedOrder, order: PaymentOrder) -> list[str]:
    """The callback's fields that differ from the issued order (those both sides know)."""
    found: list[str] = []
    if issued.product_id is not None and issued.product_id != order.product_id:
        found.append("productId")
    if issued.product_price is not None and issued.product_price != Decimal(order.product_price):
        found.append("productPrice")
    sent_amount = None if order.amount is None else Decimal(order.amount)
    if issued.amount is not None and sent_amount is not None and issued.amount != sent_amount:
        found.append("amount")
    sent_currency = order.currency_code
    if issued.currency_code is not None and sent_currency not in (None, issued.currency_code):
        found.append("currencyCode")
    return found


def _any_equal(value: str, candidates: list[str]) -> bool:
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(value.encode(), candidate.encode())
    return matched


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=len(FIELDS) + 4,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Rejection(400, "malformed", f"Body is not a valid form: {exc}") from None


def _json_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        raw_fields = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError:
        raise _Rejection(400, "malformed", "Body is not a JSON object.") from None
    pairs: list[tuple[str, str]] = []
    for key, raw in raw_fields.items():
        text = bytes(raw)
        if text.startswith(b'"'):
            pairs.append((key, msgspec.json.decode(text, type=str)))
        elif _JSON_NUMBER.fullmatch(text):
            # Signed exactly as sent: the number's own text, never a float's rendering of it.
            pairs.append((key, text.decode()))
        else:
            raise _Rejection(400, "malformed", f"field {key!r} must be a string or a number.")
    return pairs
