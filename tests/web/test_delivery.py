"""The delivery worker against scripted partners (httpx mock transport, manual clock), on both
databases: retries on the schedule, then failed; every attempt recorded; redeliver; one sender
per attempt when several workers run."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from qwallet.partner import payment_sign
from qwallet.partner import signature_header as kit_signature_header
from qwallet.payments import (
    DeliveryPolicy,
    PaymentWorker,
    PurchaseMessage,
    WalletProvider,
    create_order,
    md5_sign,
    pay_with_wallet,
)
from qwallet.service import partners
from qwallet.service.orders_admin import redeliver
from qwallet.service.partners import OperatorError
from tests.conftest import Platform

from .conftest import set_partner

SECRET = "MKiLHWZvGPTq2258"
CALLBACK_URL = "https://partner.test/pay/quantum"
Handler = Callable[[httpx.Request], httpx.Response]


def test_worked_example_sign() -> None:
    sign = md5_sign(
        "c9c35cf409344312146fa7546a94d1a6", "10001", "test", "4.99", "wm.spin.1",
        "1682319749000", SECRET,
    )  # fmt: skip
    assert sign == "39E27178DE3254875D8470AB7A13D912"


def paid_order(platform: Platform, *, callback_format: str = "form") -> tuple[str, str]:
    name = f"dl-{secrets.token_hex(4)}"
    now = platform.clock.now_ms()
    platform.run(
        partners.create_partner(
            platform.store,
            name,
            now,
            client_url="http://g.test/",
            payment_currency=platform.settings.currency_registry["XAG"],
        )
    )
    set_partner(
        platform,
        name,
        callback_url=CALLBACK_URL,
        callback_secret=SECRET,
        callback_format=callback_format,
    )
    player_id = platform.create_player("50.00")
    token = platform.create_session(player_id, name)
    cp_order_id = secrets.token_hex(8)
    message = PurchaseMessage(
        server_id=b"10001",  # type: ignore[arg-type]
        cp_order_id=cp_order_id,
        product_id="gems.100",
        product_price=b"4.90",  # type: ignore[arg-type]
        ext_params="x=1",
    )
    order, _ = platform.run(
        create_order(
            platform.store,
            platform.settings.currency_registry,
            player_id=player_id,
            token=token,
            message=message,
            now_ms=now,
        )
    )
    platform.run(pay_with_wallet(platform.store, order.id, player_id, now))
    return order.id, player_id


class Partner:
    """A scripted partner: each call takes the next answer (the last one repeats)."""

    def __init__(self, *answers: Handler | httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


def worker(platform: Platform, partner: Partner, **policy: Any) -> PaymentWorker:
    async def make() -> PaymentWorker:
        return PaymentWorker(
            platform.store,
            platform.clock,
            {"wallet": WalletProvider()},
            currencies=platform.settings.currency_registry,
            policy=DeliveryPolicy(**{"schedule_s": (5.0, 30.0), "max_attempts": 3, **policy}),
            transport=httpx.MockTransport(partner),
        )

    return platform.run(make())


def order_state(platform: Platform, order_id: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        async with platform.store.transaction() as tx:
            row = await tx.fetchrow("SELECT * FROM payment_orders WHERE id = $1", order_id)
            attempts = await tx.fetch(
                "SELECT attempt, outcome, http_status, error, response_excerpt"
                " FROM payment_attempts WHERE order_id = $1 ORDER BY attempt",
                order_id,
            )
        assert row is not None
        return {
            **row,
            "attempts": [(a["attempt"], a["outcome"]) for a in attempts],
            "rows": attempts,
        }

    return platform.run(fetch())


def ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="success")


def test_callback_is_signed_as_the_kit_verifies(platform: Platform) -> None:
    order_id, player_id = paid_order(platform)
    partner = Partner(ok)
    delivery = worker(platform, partner)
    assert platform.run(delivery.run_once()) == 1
    request = partner.requests[0]
    fields = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert fields["uid"] == player_id and fields["productPrice"] == "4.90"
    assert list(fields) == [
        "uid", "serverId", "cpOrderId", "productId", "productPrice", "extParams",
        "amount", "currencyCode", "provider", "ts", "sign",
    ]  # fmt: skip
    assert (fields["amount"], fields["currencyCode"], fields["provider"]) == (
        "4.90",
        "XAG",
        "wallet",
    )
    assert fields["ts"] == str(platform.clock.now_ms())
    assert fields["sign"] == payment_sign(
        fields["cpOrderId"], "10001", player_id, "4.90", "gems.100", fields["ts"], SECRET
    )
    assert request.headers["x-qw-signature"] == kit_signature_header(
        request.content, SECRET, int(fields["ts"])
    )
    assert order_state(platform, order_id)["state"] == "delivered"
    platform.run(delivery.stop())


def test_fails_twice_then_delivered(platform: Platform) -> None:
    order_id, _ = paid_order(platform, callback_format="json")
    partner = Partner(httpx.Response(500, text="oops"), httpx.Response(503), ok)
    delivery = worker(platform, partner)
    assert platform.run(delivery.run_once()) == 1
    platform.clock.advance(4_000)
    assert platform.run(delivery.run_once()) == 0  # not due before the first delay (5 s)
    platform.clock.advance(1_000)
    assert platform.run(delivery.run_once()) == 1
    platform.clock.advance(29_000)
    assert platform.run(delivery.run_once()) == 0  # second delay is 30 s
    platform.clock.advance(1_000)
    assert platform.run(delivery.run_once()) == 1
    state = order_state(platform, order_id)
    assert state["state"] == "delivered" and state["delivered_at_ms"] == platform.clock.now_ms()
    assert state["attempts"] == [(1, "retry"), (2, "retry"), (3, "delivered")]
    assert state["rows"][0]["http_status"] == 500 and state["rows"][0]["response_excerpt"] == "oops"
    # Each attempt is signed afresh: ts differs.
    bodies = [r.content for r in partner.requests]
    assert bodies[0].startswith(b'{"uid": ') and b'"productPrice": 4.90' in bodies[0]
    assert b'"amount": 4.90, "currencyCode": "XAG", "provider": "wallet"' in bodies[0]
    assert len(set(bodies)) == 3
    platform.run(delivery.stop())


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("too slow"),
        httpx.Response(200, text="ok"),
        httpx.Response(200, json={"code": 1}),
        httpx.Response(200, json={"code": False}),
        httpx.Response(200, text="<html>success</html>"),
        httpx.Response(302, headers={"location": "http://elsewhere.test/"}),
        httpx.Response(404, text="success"),
    ],
    ids=["down", "timeout", "ok", "code1", "codefalse", "html", "redirect", "404"],
)
def test_retries_then_failed_then_redeliver(platform: Platform, answer: Any) -> None:
    order_id, _ = paid_order(platform)
    partner = Partner(answer)
    delivery = worker(platform, partner)
    for delay_ms in (0, 5_000, 30_000):
        platform.clock.advance(delay_ms)
        assert platform.run(delivery.run_once()) == 1
    state = order_state(platform, order_id)
    assert state["state"] == "failed" and state["next_delivery_at_ms"] is None
    assert state["attempts"] == [(1, "retry"), (2, "retry"), (3, "failed")]
    platform.clock.advance(3_600_000)
    assert platform.run(delivery.run_once()) == 0  # failed orders wait for the operator

    platform.run(redeliver(platform.store, order_id, "alice", platform.clock.now_ms()))
    partner.answers = [httpx.Response(200, json={"code": 0})]
    assert platform.run(delivery.run_once()) == 1
    state = order_state(platform, order_id)
    assert state["state"] == "delivered"
    assert state["attempts"][-1] == (4, "delivered")
    with pytest.raises(OperatorError, match="No payment order"):
        platform.run(redeliver(platform.store, "no-such-order", "alice", 0))
    platform.run(delivery.stop())


def test_redeliver_is_audited_and_only_for_finished_orders(platform: Platform) -> None:
    order_id, _ = paid_order(platform)
    # A paid, undelivered order is already queued: it is not redelivered by hand.
    with pytest.raises(OperatorError, match="only delivered or failed orders"):
        platform.run(redeliver(platform.store, order_id, "bob", platform.clock.now_ms()))
    delivery = worker(platform, Partner(ok))
    platform.run(delivery.run_once())
    platform.run(redeliver(platform.store, order_id, "bob", platform.clock.now_ms()))

    async def audit() -> list[Any]:
        async with platform.store.transaction() as tx:
            return await tx.fetch(
                "SELECT operator, action FROM audit_log WHERE target = $1", order_id
            )

    assert [(r["operator"], r["action"]) for r in platform.run(audit())] == [
        ("bob", "order.redeliver")
    ]
    platform.run(delivery.run_once())
    assert order_state(platform, order_id)["attempts"] == [(1, "delivered"), (2, "delivered")]
    platform.run(delivery.stop())


def test_partner_without_callback_url_is_retried(platform: Platform) -> None:
    order_id, _ = paid_order(platform)
    state = order_state(platform, order_id)

    async def clear() -> None:
        async with platform.store.transaction() as tx:
            await tx.execute(
                "UPDATE partners SET callback_url = NULL WHERE id = $1", state["partner_id"]
            )

    platform.run(clear())
    delivery = worker(platform, Partner(ok))
    assert platform.run(delivery.run_once()) == 1
    rows = order_state(platform, order_id)["rows"]
    assert rows[0]["outcome"] == "retry" and "no callback URL" in rows[0]["error"]
    platform.run(delivery.stop())


def test_concurrent_workers_send_each_attempt_once(platform: Platform) -> None:
    orders = [paid_order(platform)[0] for _ in range(5)]
    partner = Partner(ok)
    workers = [worker(platform, partner) for _ in range(3)]

    async def race() -> list[int]:
        return list(await asyncio.gather(*(w.run_once() for w in workers)))

    assert sum(platform.run(race())) == 5
    assert len(partner.requests) == 5
    for order_id in orders:
        assert order_state(platform, order_id)["attempts"] == [(1, "delivered")]
    for w in workers:
        platform.run(w.stop())


def test_plain_http_callback_is_sent_only_where_allowed(platform: Platform) -> None:
    order_id, _ = paid_order(platform)
    partner_id = order_state(platform, order_id)["partner_id"]

    async def http_url(allow: int) -> None:
        async with platform.store.transaction() as tx:
            await tx.execute(
                "UPDATE partners SET callback_url = $1, allow_http_callback = $2 WHERE id = $3",
                "http://partner.test/pay/quantum",
                allow,
                partner_id,
            )

    platform.run(http_url(0))
    partner = Partner(ok)
    delivery = worker(platform, partner)
    platform.run(delivery.run_once())
    plain = "http://partner.test/pay/quantum"
    assert [r for r in partner.requests if str(r.url) == plain] == []  # nothing was sent
    rows = order_state(platform, order_id)["rows"]
    assert (
        rows[0]["outcome"] == "retry" and "plain-http callback URL not allowed" in rows[0]["error"]
    )

    platform.run(http_url(1))  # the operator's explicit opt-in
    platform.clock.advance(5_000)
    platform.run(delivery.run_once())
    assert [str(r.url) for r in partner.requests if str(r.url) == plain] == [plain]
    assert order_state(platform, order_id)["state"] == "delivered"
    platform.run(delivery.stop())
