"""The test vectors: what the check sends to the studio, and what a correct studio answers.

Callbacks are signed with the platform's own code (``qwallet.payments.callback``), so a vector
differs from a real delivery only in the one thing it breaks. What counts as an answer is the
platform's own rule (``is_acknowledged``: a 2xx whose body is ``success`` or ``{"code": 0}``);
a refusal must be a **4xx** — a 5xx tells the platform "try again later", which is the wrong
answer to a forgery (and the platform would keep sending it).

======================  ===================================================  ===================
row                     sent                                                 must answer
======================  ===================================================  ===================
callback.valid          a delivered order, re-sent as the platform does      acknowledged
callback.bad_sign       ``sign`` wrong, ``X-QW-Signature`` right             4xx
callback.bad_signature  ``sign`` right, ``X-QW-Signature`` wrong             4xx
callback.stale_ts       ``ts`` and the header's ``t`` one hour old           4xx
callback.replay         the valid callback's bytes again                     acknowledged or 4xx
callback.shift          last char of cpOrderId moved into serverId (same     4xx
                        ``sign``), no header: what an observer can forge
callback.unknown_order  a cpOrderId the studio never issued, signed right    4xx
query.confirmed         a withdrawal the studio confirmed                    200 CONFIRMED
query.rolled_back       a withdrawal the studio rolled back                  200 ROLLED_BACK
query.pending           a withdrawal still pending at the platform           200 PENDING
query.unknown           an mmTransactionId the studio never used             200 UNKNOWN
query.bad_credentials   a wrong password                                     401 (or 429)
======================  ===================================================  ===================
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from qwallet.payments.callback import (
    JSON_NUMBERS,
    SIGNATURE_HEADER,
    encode_fields,
    is_acknowledged,
    md5_sign,
    signature_header,
)
from qwallet.studio_check.target import DeliveredOrder, Target, Withdrawal

__all__ = ["STALE_MS", "Request", "Vector", "build_vectors"]

STALE_MS = 3_600_000
"""How old the stale vector's stamps are: far outside any sane window (the kit's is 10 min)."""

Judge = Callable[[int, bytes], bool]
_JSON_INTEGER = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]
    auth: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Vector:
    key: str
    title: str
    must: str
    judge: Judge
    request: Request | None
    skip_reason: str | None = None


def _refused(status: int, body: bytes) -> bool:
    return 400 <= status < 500


def _query_answer(mm_transaction_id: str, status: str) -> Judge:
    def judge(http_status: int, body: bytes) -> bool:
        if http_status != 200:
            return False
        try:
            answer = json.loads(body)
        except ValueError:
            return False
        return (
            isinstance(answer, dict)
            and answer.get("mmTransactionId") == mm_transaction_id
            and answer.get("status") == status
        )

    return judge


def _credentials_refused(status: int, body: bytes) -> bool:
    # 429 is the kit's answer once an address has spent its failure budget: still a refusal
    # that reveals nothing. Any answer naming a status would be a leak.
    return status in (401, 429) and b'"status"' not in body


def _fields(order: DeliveredOrder, ts_ms: int, secret: str, **changes: str) -> dict[str, str]:
    fields = {
        "uid": order.uid,
        "serverId": order.server_id,
        "cpOrderId": order.cp_order_id,
        "productId": order.product_id,
        "productPrice": order.product_price,
        "extParams": order.ext_params,
        "amount": order.amount,
        "currencyCode": order.currency_code,
        "provider": order.provider,
        **changes,
    }
    ts = str(ts_ms)
    fields["ts"] = ts
    fields["sign"] = md5_sign(
        fields["cpOrderId"],
        fields["serverId"],
        fields["uid"],
        fields["productPrice"],
        fields["productId"],
        ts,
        secret,
    )
    return fields


def _callback_request(
    url: str,
    fields: dict[str, str],
    body_format: str,
    header_secret: str | None,
    t_ms: int,
) -> Request:
    numbers = JSON_NUMBERS
    if not _JSON_INTEGER.fullmatch(fields["serverId"]):
        # A shifted serverId ("a10001", "010001") is no JSON number: send it as a string, as
        # a forger would, rather than an unparsable body refused for the wrong reason.
        numbers = tuple(name for name in JSON_NUMBERS if name != "serverId")
    body, content_type = encode_fields(fields, body_format, numbers=numbers)
    headers = {"Content-Type": content_type}
    if header_secret is not None:
        headers[SIGNATURE_HEADER] = signature_header(body, header_secret, t_ms)
    return Request(url, body, headers)


def _callback_skip(target: Target) -> str | None:
    endpoints = target.endpoints
    if not endpoints.callback_url or not endpoints.callback_secret:
        return "the partner has no payment-callback URL or secret"
    if endpoints.callback_url.lower().startswith("http://") and not endpoints.allow_http_callback:
        return "plain-http callback URL not allowed for this partner (the platform refuses it too)"
    if target.order is None:
        return (
            "no delivered payment order of this partner: buy something in the sandbox"
            " (or pass --order CP_ORDER_ID)"
        )
    return None


def callback_vectors(target: Target, now_ms: int) -> list[Vector]:
    titles = [
        ("callback.valid", "valid callback", 'acknowledged: 2xx `success` or {"code": 0}'),
        ("callback.bad_sign", "wrong sign", "refused: 4xx"),
        ("callback.bad_signature", "wrong X-QW-Signature", "refused: 4xx"),
        ("callback.stale_ts", "stale ts (1 h old)", "refused: 4xx"),
        ("callback.replay", "replay of the valid callback", "acknowledged, or refused: 4xx"),
        ("callback.shift", "cpOrderId→serverId shift, same sign", "refused: 4xx"),
        ("callback.unknown_order", "unknown cpOrderId", "refused: 4xx"),
    ]
    judges: dict[str, Judge] = {
        key: _refused for key, _, _ in titles if key not in ("callback.valid", "callback.replay")
    }
    judges["callback.valid"] = is_acknowledged
    # The platform stamps every attempt afresh, so identical bytes again can only be a replay
    # by an observer: refusing it is right, and so is acknowledging it without delivering the
    # order twice (what the kit does). A 5xx or a transport failure is a miss.
    judges["callback.replay"] = lambda status, body: (
        is_acknowledged(status, body) or _refused(status, body)
    )
    skip = _callback_skip(target)
    if skip is not None:
        return [Vector(k, t, m, judges[k], None, skip) for k, t, m in titles]
    order, endpoints = target.order, target.endpoints
    assert order is not None and endpoints.callback_url and endpoints.callback_secret
    url, secret, body_format = (
        endpoints.callback_url,
        endpoints.callback_secret,
        endpoints.callback_format,
    )
    valid = _callback_request(url, _fields(order, now_ms, secret), body_format, secret, now_ms)
    bad_sign_fields = _fields(order, now_ms, secret)
    bad_sign_fields["sign"] = md5_sign(
        order.cp_order_id, order.server_id, order.uid, order.product_price, order.product_id,
        str(now_ms), secret + "-not-the-secret",
    )  # fmt: skip
    stale_ms = now_ms - STALE_MS
    # The observer's forgery: the same concatenation cut elsewhere keeps the MD5, and without
    # the secret no X-QW-Signature can be made for the new body.
    cp, server = order.cp_order_id, order.server_id
    shifted = _fields(order, now_ms, secret, cpOrderId=cp[:-1], serverId=cp[-1:] + server)
    assert shifted["sign"] == _fields(order, now_ms, secret)["sign"]
    unknown_id = "qwcheck-" + secrets.token_hex(12)
    requests = {
        "callback.valid": valid,
        "callback.bad_sign": _callback_request(url, bad_sign_fields, body_format, secret, now_ms),
        "callback.bad_signature": _callback_request(
            url, _fields(order, now_ms, secret), body_format, secret + "-not-the-secret", now_ms
        ),
        "callback.stale_ts": _callback_request(
            url, _fields(order, stale_ms, secret), body_format, secret, stale_ms
        ),
        "callback.replay": valid,
        "callback.shift": _callback_request(url, shifted, body_format, None, now_ms),
        "callback.unknown_order": _callback_request(
            url, _fields(order, now_ms, secret, cpOrderId=unknown_id), body_format, secret, now_ms
        ),
    }
    return [Vector(k, t, m, judges[k], requests[k]) for k, t, m in titles]


def _query_request(url: str, mm_id: str, qw_id: str, auth: tuple[str, str]) -> Request:
    body = json.dumps({"mmTransactionId": mm_id, "qwTransactionId": qw_id}).encode()
    return Request(url, body, {"Content-Type": "application/json"}, auth)


def query_vectors(target: Target) -> list[Vector]:
    endpoints = target.endpoints
    no_endpoint = None
    if not endpoints.query_url or not endpoints.query_username:
        no_endpoint = "the partner has no Query Withdrawal URL or username"
    url = endpoints.query_url or ""
    auth = (endpoints.query_username or "", endpoints.query_password or "")
    vectors: list[Vector] = []
    known: list[tuple[str, str, Withdrawal | None, str, str]] = [
        ("query.confirmed", "Query: confirmed", target.confirmed, "CONFIRMED", "confirmed"),
        ("query.rolled_back", "Query: rolled back", target.rolled_back, "ROLLED_BACK",
         "rolled-back"),
        ("query.pending", "Query: pending", target.pending, "PENDING", "pending"),
    ]  # fmt: skip
    for key, title, withdrawal, status, option in known:
        must = f"200 status {status}"
        if no_endpoint or withdrawal is None:
            reason = no_endpoint or (
                f"no {option.replace('-', ' ')} withdrawal of this partner at the platform"
                f" (pass --{option} MM_TRANSACTION_ID)"
            )
            judge = _query_answer("", status)
            vectors.append(Vector(key, title, must, judge, None, reason))
            continue
        vectors.append(
            Vector(
                f"{key}",
                f"{title} ({withdrawal.mm_transaction_id})",
                must,
                _query_answer(withdrawal.mm_transaction_id, status),
                _query_request(
                    url, withdrawal.mm_transaction_id, withdrawal.qw_transaction_id, auth
                ),
            )
        )
    unknown_mm = "qwcheck-" + secrets.token_hex(16)
    wrong_auth = (auth[0], "qwcheck-" + secrets.token_hex(16))
    extra = [
        ("query.unknown", "Query: unknown id", "200 status UNKNOWN",
         _query_answer(unknown_mm, "UNKNOWN"),
         _query_request(url, unknown_mm, str(uuid.uuid4()), auth)),
        ("query.bad_credentials", "Query: wrong credentials", "401 (or 429), no status",
         _credentials_refused,
         _query_request(url, unknown_mm, str(uuid.uuid4()), wrong_auth)),
    ]  # fmt: skip
    for key, title, must, judge, request in extra:
        if no_endpoint:
            vectors.append(Vector(key, title, must, judge, None, no_endpoint))
        else:
            vectors.append(Vector(key, title, must, judge, request))
    return vectors


def build_vectors(target: Target, now_ms: int, *, query_only: bool = False) -> list[Vector]:
    """Every row, in the order they are sent (the replay right after the valid callback)."""
    callbacks = [] if query_only else callback_vectors(target, now_ms)
    return callbacks + query_vectors(target)
