"""The payment-callback receiver (spec §2.3): the platform tells the studio an order was paid.

``PaymentCallbackApp`` is an ASGI app the studio mounts at its registered callback URL. For each
``POST`` it:

1. reads at most ``max_body_bytes`` of body;
2. verifies ``X-QW-Signature`` when present (and requires it if ``require_header_signature``);
3. parses the body — ``application/x-www-form-urlencoded`` by default, or JSON — into the eight
   fields ``uid, serverId, cpOrderId, productId, productPrice, extParams, ts, sign``, keeping
   every value exactly as sent (a JSON number keeps its text: ``4.90`` stays ``4.90``); a missing,
   repeated or unknown field is refused;
4. checks ``sign`` = uppercase hex MD5 of cpOrderId + serverId + uid + productPrice + productId
   + ts + secret (no separators);
5. refuses a ``ts`` (milliseconds) more than ``window_s`` away from now, in either direction;
6. delivers each cpOrderId once: the first call runs the studio's ``deliver`` hook, records the
   delivery durably, and only then answers ``success`` (text/plain); a later call with the same
   data answers ``success`` without running the hook; the same cpOrderId with different data is
   refused (409).

The ``X-QW-Signature`` header (our extension; the platform produces the same)::

    X-QW-Signature: t=<unix time in ms>,v1=<hex HMAC-SHA256>

where the HMAC key is the shared secret (UTF-8) and the message is ``"<t>."`` followed by the
exact raw request body. Several ``v1=`` items may be sent (one per secret during a rotation);
one match is enough. ``t`` is held to the same window as ``ts``. Unlike the MD5 ``sign``, it
covers the whole body (``extParams`` included) and cannot be replayed after the window.

Rejections answer 4xx with JSON ``{"error": <reason code>, "message": <text>}`` and deliver
nothing: 400 malformed or stale/future, 403 bad signature, 405 method, 409 conflicting data,
413 too large; a failing hook answers 500 and a delivery in progress 503, both of which the
platform retries.

Delivery is at-least-once across a crash between the hook's return and the record's commit, so
the hook should itself be idempotent by cpOrderId (the order id is a natural unique key).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from qwallet.partner._clock import Clock, SystemClock
from qwallet.partner._http import BodyTooLarge, lifespan, read_body
from qwallet.partner._store import KitStore, PaymentOrder

__all__ = [
    "DeliveryHook",
    "PaymentCallbackApp",
    "payment_sign",
    "signature_header",
]

logger = logging.getLogger("qwallet.partner.callback")

DeliveryHook = Callable[[PaymentOrder], Awaitable[None] | None]
BodyFormat = Literal["form", "json", "auto"]

FIELDS = ("uid", "serverId", "cpOrderId", "productId", "productPrice", "extParams", "ts", "sign")
SIGNATURE_HEADER = "X-QW-Signature"
MAX_VALUE_CHARS = 1024

_JSON_NUMBER = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_MD5_HEX = re.compile(r"[0-9A-Fa-f]{32}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def payment_sign(
    cp_order_id: str,
    server_id: str,
    uid: str,
    product_price: str,
    product_id: str,
    ts: str,
    secret: str,
) -> str:
    """The documented ``sign``: uppercase hex MD5 of the values concatenated, then the secret.

    MD5 is what the contract prescribes; it is an integrity check here, not a password hash.
    """
    text = cp_order_id + server_id + uid + product_price + product_id + ts + secret
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest().upper()


def signature_header(body: bytes, secret: str, t_ms: int) -> str:
    """The ``X-QW-Signature`` value for ``body`` sent at ``t_ms`` (see the module docstring)."""
    return f"t={t_ms},v1={_hmac_hex(secret, t_ms, body)}"


def _hmac_hex(secret: str, t_ms: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t_ms}.".encode() + body, hashlib.sha256).hexdigest()


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
        body_format: BodyFormat = "form",
        window_s: float = 600.0,
        require_header_signature: bool = False,
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
        self.body_format = body_format
        self.window_s = window_s
        self.require_header_signature = require_header_signature
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
        elif self.require_header_signature:
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
        expected = [_hmac_hex(secret, t_ms, body) for secret in self.secrets]
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
        missing = [name for name in FIELDS if name not in fields]
        if missing:
            raise _Rejection(400, "malformed", f"missing field(s): {', '.join(missing)}.")
        for name in ("uid", "serverId", "cpOrderId", "productId", "productPrice"):
            if not fields[name]:
                raise _Rejection(400, "malformed", f"field {name!r} is empty.")
        return fields

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
