"""A small studio whose two endpoints follow the contract until a switch breaks one rule.

Written from the contract, not from the kit, so the check is tested against a second, independent
reading of it. ``BREAKS`` names every switch and the rows of the check it must make fail.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

WINDOW_MS = 600_000
HANG_S = 3.0

# switch → the rows it must make fail (a break can fail more than its own row: an MD5-only
# studio that delivers any order fails the shift and the unknown order alike).
BREAKS: dict[str, set[str]] = {
    "ack_with_ok": {"callback.valid", "callback.replay"},
    "skip_sign": {"callback.bad_sign"},
    "skip_header": {"callback.bad_signature"},
    "skip_window": {"callback.stale_ts"},
    "crash_on_replay": {"callback.replay"},
    "md5_only_any_order": {"callback.shift", "callback.unknown_order"},
    "deliver_any_order": {"callback.unknown_order"},
    "confirmed_as_pending": {"query.confirmed"},
    "rolled_back_as_unknown": {"query.rolled_back"},
    "pending_as_confirmed": {"query.pending"},
    "unknown_as_pending": {"query.unknown"},
    "skip_auth": {"query.bad_credentials"},
}


@dataclass
class Studio:
    secret: str
    query_auth: tuple[str, str]
    issued: dict[str, str] = field(default_factory=dict)  # cpOrderId → uid
    withdrawals: dict[str, str] = field(default_factory=dict)  # mmTransactionId → status
    delivered: set[str] = field(default_factory=set)
    seen_headers: set[str] = field(default_factory=set)
    breaks: set[str] = field(default_factory=set)

    async def callback(self, request: Request) -> Response:
        if "hang" in self.breaks:  # not in BREAKS: it fails every row (tests the timeouts)
            await asyncio.sleep(HANG_S)
        body = await request.body()
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        now_ms = int(time.time() * 1000)
        header = request.headers.get("x-qw-signature")
        if header is None:
            if "md5_only_any_order" not in self.breaks:
                return _refuse(403, "missing_signature")
        elif "skip_header" not in self.breaks:
            parts = dict(item.split("=", 1) for item in header.split(","))
            expected = hmac.new(
                self.secret.encode(), parts.get("t", "").encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(parts.get("v1", ""), expected):
                return _refuse(403, "bad_signature")
        text = "".join(
            fields.get(k, "")
            for k in ("cpOrderId", "serverId", "uid", "productPrice", "productId", "ts")
        )
        sign = hashlib.md5((text + self.secret).encode(), usedforsecurity=False).hexdigest()
        if "skip_sign" not in self.breaks and fields.get("sign", "") != sign.upper():
            return _refuse(403, "bad_sign")
        if "skip_window" not in self.breaks and abs(int(fields["ts"]) - now_ms) > WINDOW_MS:
            return _refuse(400, "stale")
        cp_order_id = fields["cpOrderId"]
        any_order = self.breaks & {"md5_only_any_order", "deliver_any_order"}
        if not any_order and self.issued.get(cp_order_id) != fields["uid"]:
            return _refuse(422, "not_issued")
        if header is not None and header in self.seen_headers and "crash_on_replay" in self.breaks:
            return PlainTextResponse("Internal Server Error", status_code=500)
        if header is not None:
            self.seen_headers.add(header)
        self.delivered.add(cp_order_id)
        return PlainTextResponse("OK" if "ack_with_ok" in self.breaks else "success")

    async def query(self, request: Request) -> Response:
        if "hang" in self.breaks:
            await asyncio.sleep(HANG_S)
        expected = base64.b64encode(":".join(self.query_auth).encode()).decode()
        if "skip_auth" not in self.breaks and request.headers.get("authorization") != (
            f"Basic {expected}"
        ):
            return JSONResponse({"errorCode": 103, "errorDescription": "no"}, status_code=401)
        asked = await request.json()
        mm_id = asked["mmTransactionId"]
        status = self.withdrawals.get(mm_id, "UNKNOWN")
        swaps = {
            "confirmed_as_pending": ("CONFIRMED", "PENDING"),
            "rolled_back_as_unknown": ("ROLLED_BACK", "UNKNOWN"),
            "pending_as_confirmed": ("PENDING", "CONFIRMED"),
            "unknown_as_pending": ("UNKNOWN", "PENDING"),
        }
        for switch, (before, after) in swaps.items():
            if switch in self.breaks and status == before:
                status = after
                break
        return JSONResponse({"mmTransactionId": mm_id, "status": status})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/pay/quantum", self.callback, methods=["POST"]),
                Route("/query", self.query, methods=["POST"]),
            ]
        )


def _refuse(status: int, error: str) -> Response:
    return JSONResponse({"error": error}, status_code=status)
