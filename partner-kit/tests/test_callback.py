"""The payment-callback receiver, served by uvicorn on loopback, called with real HTTP.

The form tests exercise the documented MD5 ``sign`` on its own, so their receiver runs in the
explicit MD5-only mode; the JSON tests use the default mode (``X-QW-Signature`` required, with
``amount``, ``currencyCode`` and ``provider``). Both deliver only the orders in ``issued``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from kit_support import serve
from qwallet_partner import (
    FakeClock,
    IssuedOrder,
    PaymentCallbackApp,
    PaymentOrder,
    SQLiteStore,
    payment_sign,
    signature_header,
)

SECRET = "MKiLHWZvGPTq2258"
EXAMPLE = {
    "uid": "test",
    "serverId": "10001",
    "cpOrderId": "c9c35cf409344312146fa7546a94d1a6",
    "productId": "wm.spin.1",
    "productPrice": "4.99",
    "extParams": "level=3&slot=2",
    "ts": "1682319749000",
}
EXAMPLE_SIGN = "39E27178DE3254875D8470AB7A13D912"
EXAMPLE_NOW_S = 1682319749.0 + 30  # the callback arrives 30 s after it was stamped


def test_worked_example_sign() -> None:
    assert (
        payment_sign(
            "c9c35cf409344312146fa7546a94d1a6",
            "10001",
            "test",
            "4.99",
            "wm.spin.1",
            "1682319749000",
            SECRET,
        )
        == EXAMPLE_SIGN
    )


def signed(**changes: str) -> dict[str, str]:
    fields = {**EXAMPLE, **changes}
    fields["sign"] = payment_sign(
        fields["cpOrderId"],
        fields["serverId"],
        fields["uid"],
        fields["productPrice"],
        fields["productId"],
        fields["ts"],
        SECRET,
    )
    return fields


@dataclass
class Receiver:
    url: str
    clock: FakeClock
    delivered: list[PaymentOrder] = field(default_factory=list)
    fail_next: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: dict[str, IssuedOrder] = field(
        default_factory=lambda: {EXAMPLE["cpOrderId"]: IssuedOrder(uid=EXAMPLE["uid"])}
    )

    def post_form(self, fields: dict[str, str]) -> httpx.Response:
        return httpx.post(
            self.url,
            content=urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


def make_receiver(db_path: Path, **options: object) -> Iterator[Receiver]:
    clock = FakeClock(EXAMPLE_NOW_S)
    store = SQLiteStore(db_path)
    receiver = Receiver("", clock)

    async def deliver(order: PaymentOrder) -> None:
        await asyncio.sleep(0.01)
        with receiver.lock:
            if receiver.fail_next:
                receiver.fail_next.pop()
                raise RuntimeError("inventory service down")
            receiver.delivered.append(order)

    app = PaymentCallbackApp(
        store,
        SECRET,
        deliver,
        issued_order=receiver.issued.get,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )
    with serve(app) as base:
        receiver.url = base + "/pay/quantum"
        yield receiver
    asyncio.run(store.close())


@pytest.fixture
def receiver(db_path: Path) -> Iterator[Receiver]:
    yield from make_receiver(db_path, accept_md5_only=True)


def test_worked_example_is_delivered(receiver: Receiver, db_path: Path) -> None:
    response = receiver.post_form({**EXAMPLE, "sign": EXAMPLE_SIGN})
    assert response.status_code == 200
    assert response.text == "success"
    assert response.headers["content-type"].startswith("text/plain")
    (order,) = receiver.delivered
    assert order.cp_order_id == EXAMPLE["cpOrderId"]
    assert order.product_price == "4.99" and order.server_id == "10001"
    assert order.ext_params == "level=3&slot=2" and order.ts_ms == 1682319749000

    async def recorded() -> bool:
        store = SQLiteStore(db_path)
        try:
            return await store.is_delivered(EXAMPLE["cpOrderId"])
        finally:
            await store.close()

    assert asyncio.run(recorded())


def test_lowercase_sign_is_accepted(receiver: Receiver) -> None:
    response = receiver.post_form({**EXAMPLE, "sign": EXAMPLE_SIGN.lower()})
    assert response.text == "success"


def test_replay_is_delivered_once(receiver: Receiver) -> None:
    body = {**EXAMPLE, "sign": EXAMPLE_SIGN}
    for _ in range(3):
        response = receiver.post_form(body)
        assert (response.status_code, response.text) == (200, "success")
    receiver.clock.advance(60)  # a retry re-stamped later: same order, new ts
    response = receiver.post_form(signed(ts=str(int(receiver.clock.now() * 1000))))
    assert response.text == "success"
    assert len(receiver.delivered) == 1


def test_concurrent_duplicates_are_delivered_once(receiver: Receiver) -> None:
    body = urlencode({**EXAMPLE, "sign": EXAMPLE_SIGN}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            return list(
                await asyncio.gather(
                    *(client.post(receiver.url, content=body, headers=headers) for _ in range(8))
                )
            )

    responses = asyncio.run(storm())
    assert len(receiver.delivered) == 1
    assert all(r.status_code in (200, 503) for r in responses)
    assert any(r.text == "success" for r in responses)


def test_same_order_with_different_data_is_refused(receiver: Receiver) -> None:
    assert receiver.post_form(signed()).text == "success"
    response = receiver.post_form(signed(productPrice="0.01"))
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert len(receiver.delivered) == 1


@pytest.mark.parametrize(
    "tamper",
    ["uid", "serverId", "cpOrderId", "productId", "productPrice", "ts"],
)
def test_tampered_field_is_rejected(receiver: Receiver, tamper: str) -> None:
    fields = {**EXAMPLE, "sign": EXAMPLE_SIGN}
    fields[tamper] = "1682319749001" if tamper == "ts" else fields[tamper] + "0"
    receiver.issued[fields["cpOrderId"]] = IssuedOrder(uid=fields["uid"])
    response = receiver.post_form(fields)
    assert response.status_code == 403
    assert response.json()["error"] == "bad_sign"
    assert receiver.delivered == []


def test_wrong_secret_is_rejected(receiver: Receiver) -> None:
    fields = {**EXAMPLE}
    fields["sign"] = payment_sign(
        fields["cpOrderId"],
        fields["serverId"],
        fields["uid"],
        fields["productPrice"],
        fields["productId"],
        fields["ts"],
        "not-" + SECRET,
    )
    response = receiver.post_form(fields)
    assert response.status_code == 403
    assert receiver.delivered == []


@pytest.mark.parametrize(("offset_s", "reason"), [(-601, "stale"), (601, "future")])
def test_stale_or_future_ts_is_rejected(receiver: Receiver, offset_s: int, reason: str) -> None:
    ts = str(int((receiver.clock.now() + offset_s) * 1000))
    response = receiver.post_form(signed(ts=ts))
    assert response.status_code == 400
    assert response.json()["error"] == reason
    assert receiver.delivered == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"uid=test",
        b"%%%",
        b"\xff\xfe=1",
        urlencode({**EXAMPLE, "sign": EXAMPLE_SIGN, "bonus": "1"}).encode(),
        urlencode({**EXAMPLE, "sign": EXAMPLE_SIGN}).encode() + b"&uid=test",
        urlencode({**EXAMPLE, "sign": "not-hex"}).encode(),
        urlencode({**EXAMPLE, "ts": "17e11", "sign": EXAMPLE_SIGN}).encode(),
    ],
)
def test_malformed_body_is_rejected(receiver: Receiver, body: bytes) -> None:
    response = httpx.post(
        receiver.url,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error"] in ("malformed", "bad_sign")
    assert receiver.delivered == []


def test_method_and_size_limits(receiver: Receiver) -> None:
    assert httpx.get(receiver.url).status_code == 405
    assert httpx.post(receiver.url, content=b"a" * 20_000).status_code == 413
    assert receiver.delivered == []


def test_failing_hook_answers_500_and_the_retry_delivers(receiver: Receiver) -> None:
    receiver.fail_next.append(True)
    first = receiver.post_form(signed())
    assert first.status_code == 500 and first.text != "success"
    assert receiver.delivered == []
    assert receiver.post_form(signed()).text == "success"
    assert len(receiver.delivered) == 1


# -- JSON bodies and the X-QW-Signature header --------------------------------------------


@pytest.fixture
def json_receiver(db_path: Path) -> Iterator[Receiver]:
    yield from make_receiver(db_path, body_format="json")


def json_body(price_text: str = "4.99") -> bytes:
    # Numbers as JSON numbers: the signature covers their text exactly as sent.
    sign = payment_sign(
        EXAMPLE["cpOrderId"], "10001", "test", price_text, "wm.spin.1", "1682319749000", SECRET
    )
    return (
        '{"uid": "test", "serverId": 10001, "cpOrderId": "c9c35cf409344312146fa7546a94d1a6",'
        f' "productId": "wm.spin.1", "productPrice": {price_text}, "extParams": "",'
        f' "ts": 1682319749000, "sign": "{sign}",'
        f' "amount": {price_text}, "currencyCode": "EUR", "provider": "wallet"}}'
    ).encode()


def post_json(receiver: Receiver, body: bytes, header: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-QW-Signature"] = header
    return httpx.post(receiver.url, content=body, headers=headers)


def now_ms(receiver: Receiver) -> int:
    return int(receiver.clock.now() * 1000)


def test_json_body_with_header_signature(json_receiver: Receiver) -> None:
    body = json_body()
    response = post_json(json_receiver, body, signature_header(body, SECRET, now_ms(json_receiver)))
    assert (response.status_code, response.text) == (200, "success")
    order = json_receiver.delivered[0]
    assert order.server_id == "10001" and order.header_signed
    assert (order.amount, order.currency_code, order.provider) == ("4.99", "EUR", "wallet")


def test_json_number_is_signed_as_sent(json_receiver: Receiver) -> None:
    body = json_body("4.90")  # a float would print 4.9 and fail the signature
    response = post_json(json_receiver, body, signature_header(body, SECRET, now_ms(json_receiver)))
    assert response.text == "success"
    assert json_receiver.delivered[0].product_price == "4.90"
    assert json_receiver.delivered[0].amount == "4.90"


def test_header_signature_checks(json_receiver: Receiver) -> None:
    body = json_body()
    t = now_ms(json_receiver)
    good = signature_header(body, SECRET, t)
    cases = {
        None: "missing_signature",
        signature_header(body, "other-secret", t): "bad_signature",
        signature_header(body + b" ", SECRET, t): "bad_signature",
        good.replace(f"t={t}", f"t={t + 1}"): "bad_signature",
        f"t={t}": "bad_signature",
        "v1=" + "0" * 64: "bad_signature",
        "garbage": "bad_signature",
    }
    for header, reason in cases.items():
        response = post_json(json_receiver, body, header)
        assert response.status_code == 403, header
        assert response.json()["error"] == reason
    stale = signature_header(body, SECRET, t - 11 * 60 * 1000)
    assert post_json(json_receiver, body, stale).json()["error"] == "stale"
    # Body tampered but header kept: the HMAC catches even the unsigned extParams.
    tampered = body.replace(b'"extParams": ""', b'"extParams": "x"')
    assert post_json(json_receiver, tampered, good).json()["error"] == "bad_signature"
    assert json_receiver.delivered == []
    rotated = good + ",v1=" + "f" * 64  # one matching v1 of several is enough
    assert post_json(json_receiver, body, rotated).text == "success"


def test_json_rejects_non_scalar_values(json_receiver: Receiver) -> None:
    body = json.dumps({**EXAMPLE, "sign": EXAMPLE_SIGN, "extParams": {"a": 1}}).encode()
    response = post_json(json_receiver, body, signature_header(body, SECRET, now_ms(json_receiver)))
    assert response.status_code == 400
    assert json_receiver.delivered == []


def test_default_mode_requires_amount_currency_and_provider(json_receiver: Receiver) -> None:
    body = json_body().replace(
        b', "amount": 4.99, "currencyCode": "EUR", "provider": "wallet"', b""
    )
    response = post_json(json_receiver, body, signature_header(body, SECRET, now_ms(json_receiver)))
    assert response.status_code == 400
    assert response.json() == {
        "error": "malformed",
        "message": "missing field(s): amount, currencyCode, provider.",
    }
    assert json_receiver.delivered == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", "-4.99"), ("amount", "4.9e0"), ("currencyCode", '"eu"'), ("provider", '"Card!"')],
)
def test_payment_fields_are_checked(json_receiver: Receiver, field: str, value: str) -> None:
    original = {"amount": "4.99", "currencyCode": '"EUR"', "provider": '"wallet"'}[field]
    body = json_body().replace(f'"{field}": {original}'.encode(), f'"{field}": {value}'.encode())
    response = post_json(json_receiver, body, signature_header(body, SECRET, now_ms(json_receiver)))
    assert response.status_code == 400 and response.json()["error"] == "malformed"
    assert json_receiver.delivered == []


def test_md5_only_mode_still_takes_the_old_callback(receiver: Receiver) -> None:
    """Without the three new fields (a platform from before them): MD5-only mode only."""
    assert receiver.post_form({**EXAMPLE, "sign": EXAMPLE_SIGN}).text == "success"
    (order,) = receiver.delivered
    assert (order.amount, order.currency_code, order.provider) == (None, None, None)
    assert not order.header_signed


def test_failing_lookup_answers_500_and_records_nothing(db_path: Path) -> None:
    store = SQLiteStore(db_path)

    def lookup(cp_order_id: str) -> IssuedOrder | None:
        raise RuntimeError("game database down")

    delivered: list[PaymentOrder] = []
    app = PaymentCallbackApp(
        store,
        SECRET,
        delivered.append,
        issued_order=lookup,
        accept_md5_only=True,
        clock=FakeClock(EXAMPLE_NOW_S),
    )
    with serve(app) as base:
        response = httpx.post(
            base + "/pay/quantum",
            content=urlencode({**EXAMPLE, "sign": EXAMPLE_SIGN}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 500 and response.json()["error"] == "lookup_failed"
    assert delivered == [] and not asyncio.run(store.is_delivered(EXAMPLE["cpOrderId"]))
    asyncio.run(store.close())
