"""Finding 4 (kit side) and the Query Withdrawal throttle: the partner kit and the demo studio.

The studio tests drive the demo studio backend under uvicorn, against the real platform server
(both platform databases); the callbacks are built as the platform builds them, with its own
``md5_sign`` and ``signature_header``. The MD5-only, replay and Query tests mount the kit's apps
under uvicorn on the kit's SQLite and PostgreSQL stores. Every refusal is checked to change
nothing: the genuine callback is still delivered afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from qwallet.partner import (
    FakeClock,
    IssuedOrder,
    KitStore,
    PaymentCallbackApp,
    PaymentOrder,
    QueryWithdrawalApp,
)
from qwallet.payments.callback import md5_sign, signature_header

from ..demo.conftest import CALLBACK_SECRET, Demo, demo, encode_callback, paid_callback
from ..partner.conftest import StoreFactory, kit_backend, new_store, serve

__all__ = ["demo", "kit_backend", "new_store"]  # the shared fixtures this module uses

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def issued_ending_in_a_digit(demo: Demo, pack_id: str = "chest.gold") -> str:
    """An order the studio issued whose cpOrderId ends in a digit (uuid hex: 10 in 16)."""
    for _ in range(50):
        cp_order_id = str(demo.order(pack_id)["cpOrderId"])
        if cp_order_id[-1].isdigit():
            return cp_order_id
    raise AssertionError("no cpOrderId ending in a digit")


def shifted(fields: dict[str, str]) -> dict[str, str]:
    """The last character of cpOrderId moved into serverId: same MD5, another order."""
    moved = fields["cpOrderId"][-1]
    return {
        **fields,
        "cpOrderId": fields["cpOrderId"][:-1],
        "serverId": moved + fields["serverId"],
    }


def same_sign(fields: dict[str, str]) -> bool:
    return fields["sign"] == md5_sign(
        fields["cpOrderId"],
        fields["serverId"],
        fields["uid"],
        fields["productPrice"],
        fields["productId"],
        fields["ts"],
        CALLBACK_SECRET,
    )


# -- the demo studio against the real platform -------------------------------------------------


@pytest.mark.finding("4")
def test_field_boundary_shift_is_refused(demo: Demo) -> None:
    cp_order_id = issued_ending_in_a_digit(demo)
    genuine = paid_callback(cp_order_id, demo.player_id, "chest.gold", "9.99")
    attack = shifted(genuine)
    assert same_sign(attack) and attack["serverId"].isdigit()  # valid-looking, same MD5
    body, headers = encode_callback(genuine)
    observed_header = headers["X-QW-Signature"]

    # The observed callback's header does not cover the shifted body; without it: refused.
    attack_body = urlencode(attack).encode()
    response = demo.http.post(
        "/pay/quantum", content=attack_body, headers={**FORM, "X-QW-Signature": observed_header}
    )
    assert response.status_code == 403 and response.json()["error"] == "bad_signature"
    response = demo.http.post("/pay/quantum", content=attack_body, headers=FORM)
    assert response.status_code == 403 and response.json()["error"] == "missing_signature"
    assert demo.items() == []

    # Nothing was recorded: the genuine callback delivers the one chest.
    assert demo.http.post("/pay/quantum", content=body, headers=headers).text == "success"
    assert demo.items() == [("chest", 1)]


@pytest.mark.finding("4")
def test_callback_without_signature_header_is_refused_by_default(demo: Demo) -> None:
    cp_order_id = demo.order("gems.small")["cpOrderId"]
    fields = paid_callback(cp_order_id, demo.player_id, "gems.small", "0.99")
    response = demo.callback(fields, secret=None)  # a correct MD5 sign, no header
    assert response.status_code == 403
    assert response.json() == {
        "error": "missing_signature",
        "message": "X-QW-Signature header is required.",
    }
    assert demo.items() == []
    assert demo.callback(fields).text == "success"
    assert demo.items() == [("gems", 100)]


@pytest.mark.finding("4")
@pytest.mark.parametrize("server_id", ["1a", "-1", "1.5", " 1", "0x1", "1" * 33])
def test_non_numeric_server_id_is_refused(demo: Demo, server_id: str) -> None:
    cp_order_id = demo.order("gems.small")["cpOrderId"]
    fields = paid_callback(cp_order_id, demo.player_id, "gems.small", "0.99", server_id=server_id)
    response = demo.callback(fields)  # correctly signed, header included
    assert response.status_code == 400
    assert response.json() == {
        "error": "malformed",
        "message": "serverId must be digits only (at most 32).",
    }
    assert demo.items() == []
    assert demo.callback(paid_callback(cp_order_id, demo.player_id, "gems.small", "0.99")).text == (
        "success"
    )


@pytest.mark.finding("4")
def test_order_never_issued_or_issued_to_another_player_is_not_delivered(demo: Demo) -> None:
    never = paid_callback("f" * 32, demo.player_id, "chest.gold", "9.99")
    response = demo.callback(never)
    assert response.status_code == 422
    assert response.json() == {
        "error": "not_issued",
        "message": "cpOrderId was not issued to this uid.",
    }

    other_id, other_token = demo.new_player()
    theirs = demo.order("chest.gold", token=other_token)["cpOrderId"]
    stolen = paid_callback(theirs, demo.player_id, "chest.gold", "9.99")
    response = demo.callback(stolen)
    assert response.status_code == 422 and response.json()["error"] == "not_issued"
    assert demo.items() == [] and demo.items(other_token) == []

    # Neither was recorded as seen: the genuine callback of that order delivers to its player.
    assert demo.callback(paid_callback(theirs, other_id, "chest.gold", "9.99")).text == "success"
    assert demo.items(other_token) == [("chest", 1)] and demo.items() == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"amount": "0.01"}, "amount"),
        ({"amount": "99.90"}, "amount"),
        ({"currencyCode": "EUR"}, "currencyCode"),
    ],
)
@pytest.mark.finding("3")
def test_amount_or_currency_mismatch_is_refused(
    demo: Demo, change: dict[str, str], named: str
) -> None:
    cp_order_id = demo.order("chest.gold")["cpOrderId"]
    genuine = paid_callback(cp_order_id, demo.player_id, "chest.gold", "9.99")
    for body_format in ("form", "json"):
        response = demo.callback({**genuine, **change}, body_format)  # header-signed
        assert response.status_code == 422
        assert response.json() == {
            "error": "order_mismatch",
            "message": f"{named} differ(s) from the order issued.",
        }
    assert demo.items() == []
    # The same total written with another scale is the same amount.
    assert demo.callback({**genuine, "amount": "9.990"}, "json").text == "success"
    assert demo.items() == [("chest", 1)]


# -- the kit's receiver and Query endpoint on both kit stores ----------------------------------


NOW_S = 1_700_000_000.0
ISSUED_ID = "c9c35cf409344312146fa7546a94d1a6"


def mounted(path: str, app: ASGIApp, store: KitStore) -> Starlette:
    """``app`` at ``path``; the store is closed in the server's own event loop (asyncpg pools
    belong to the loop that opened them)."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await store.close()

    return Starlette(routes=[Route(path, app)], lifespan=lifespan)


@dataclass
class Receiver:
    url: str
    clock: FakeClock
    new_store: StoreFactory
    delivered: list[PaymentOrder] = field(default_factory=list)

    def post(self, fields: dict[str, str], *, header: bool = True) -> httpx.Response:
        body = urlencode(fields).encode()
        headers = dict(FORM)
        if header:
            t_ms = int(self.clock.now() * 1000)
            headers["X-QW-Signature"] = signature_header(body, CALLBACK_SECRET, t_ms)
        return httpx.post(self.url, content=body, headers=headers)

    def fields(self, **changes: str) -> dict[str, str]:
        values = {
            "uid": "p-1",
            "serverId": "10001",
            "cpOrderId": ISSUED_ID,
            "productId": "wm.spin.1",
            "productPrice": "4.99",
            "extParams": "",
            "amount": "4.99",
            "currencyCode": "EUR",
            "provider": "wallet",
            "ts": str(int(self.clock.now() * 1000)),
            **changes,
        }
        values["sign"] = md5_sign(
            values["cpOrderId"],
            values["serverId"],
            values["uid"],
            values["productPrice"],
            values["productId"],
            values["ts"],
            CALLBACK_SECRET,
        )
        return values

    def recorded(self, cp_order_id: str = ISSUED_ID) -> bool:
        """Whether the kit's store records ``cp_order_id`` as delivered (read by another
        store on the same database, like another process)."""

        async def read() -> bool:
            store = self.new_store()
            try:
                return await store.is_delivered(cp_order_id)
            finally:
                await store.close()

        return asyncio.run(read())


def kit_receiver(new_store: StoreFactory, **options: object) -> Iterator[Receiver]:
    clock = FakeClock(NOW_S)
    app_store = new_store()
    receiver = Receiver("", clock, new_store)
    issued = {
        ISSUED_ID: IssuedOrder(
            "p-1", "wm.spin.1", Decimal("4.99"), amount=Decimal("4.99"), currency_code="EUR"
        )
    }
    app = PaymentCallbackApp(
        app_store,
        CALLBACK_SECRET,
        receiver.delivered.append,
        issued_order=issued.get,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )
    with serve(mounted("/pay/quantum", app, app_store)) as base:
        receiver.url = base + "/pay/quantum"
        yield receiver


@pytest.fixture
def receiver(new_store: StoreFactory) -> Iterator[Receiver]:
    yield from kit_receiver(new_store)


@pytest.fixture
def md5_only_receiver(new_store: StoreFactory) -> Iterator[Receiver]:
    yield from kit_receiver(new_store, accept_md5_only=True)


@pytest.mark.finding("4")
def test_md5_only_callbacks_are_accepted_only_when_chosen(
    receiver: Receiver, md5_only_receiver: Receiver
) -> None:
    """Without the header (and, from an older platform, without the three new fields)."""
    old_style = receiver.fields()
    for name in ("amount", "currencyCode", "provider"):
        del old_style[name]
    response = receiver.post(old_style, header=False)
    assert response.status_code == 403 and response.json()["error"] == "missing_signature"
    assert receiver.delivered == [] and not receiver.recorded()

    assert md5_only_receiver.post(old_style, header=False).text == "success"
    (order,) = md5_only_receiver.delivered
    assert not order.header_signed and order.amount is None
    # A header that is sent is still verified in MD5-only mode.
    response = httpx.post(
        md5_only_receiver.url,
        content=urlencode(old_style).encode(),
        headers={**FORM, "X-QW-Signature": f"t={int(NOW_S * 1000)},v1={'0' * 64}"},
    )
    assert response.status_code == 403 and response.json()["error"] == "bad_signature"


@pytest.mark.finding("4")
def test_field_boundary_shift_is_refused_even_in_md5_only_mode(md5_only_receiver: Receiver) -> None:
    genuine = md5_only_receiver.fields()
    attack = shifted(genuine)  # "…a6" + "10001" → "…a" + "610001"
    assert same_sign(attack) and attack["serverId"].isdigit()
    response = md5_only_receiver.post(attack, header=False)
    assert response.status_code == 422 and response.json()["error"] == "not_issued"
    # Into uid instead: the order names another player.
    into_uid = {**genuine, "serverId": "1000", "uid": "1p-1"}
    assert same_sign(into_uid)
    response = md5_only_receiver.post(into_uid, header=False)
    assert response.status_code == 422 and response.json()["error"] == "not_issued"
    # A letter moved into serverId is not a number.
    letter = {**genuine, "cpOrderId": ISSUED_ID[:-2], "serverId": "a610001"}
    assert same_sign(letter)
    response = md5_only_receiver.post(letter, header=False)
    assert response.status_code == 400 and response.json()["error"] == "malformed"
    # Between price and product: another product at another price.
    product = {**genuine, "productPrice": "4.9", "productId": "9wm.spin.1"}
    assert same_sign(product)
    response = md5_only_receiver.post(product, header=False)
    assert response.status_code == 422 and response.json()["error"] == "order_mismatch"
    assert md5_only_receiver.delivered == [] and not md5_only_receiver.recorded(attack["cpOrderId"])
    assert md5_only_receiver.post(genuine, header=False).text == "success"
    assert [o.cp_order_id for o in md5_only_receiver.delivered] == [ISSUED_ID]


@pytest.mark.finding("4")
def test_replay_is_still_refused(receiver: Receiver) -> None:
    fields = receiver.fields()
    body = urlencode(fields).encode()
    headers = {**FORM, "X-QW-Signature": signature_header(body, CALLBACK_SECRET, int(NOW_S * 1000))}
    for _ in range(3):  # the platform's at-least-once retries: one delivery
        response = httpx.post(receiver.url, content=body, headers=headers)
        assert (response.status_code, response.text) == (200, "success")
    assert len(receiver.delivered) == 1 and receiver.recorded()
    receiver.clock.advance(601)  # the same bytes after the window
    response = httpx.post(receiver.url, content=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "stale"
    assert len(receiver.delivered) == 1


@pytest.mark.finding("H")
def test_query_throttles_failed_credentials_per_address(new_store: StoreFactory) -> None:
    good, bad = ("qw-platform", "pl4tform-pass"), ("qw-platform", "guess")
    query = {"mmTransactionId": "demo-x", "qwTransactionId": "q-1"}
    store = new_store()
    app = QueryWithdrawalApp(store, [good], failure_burst=3, failure_refill_s=1.0)
    attacker = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    platform = httpx.Client(timeout=10)  # from 127.0.0.1
    try:
        with serve(mounted("/query", app, store)) as base:
            url = base + "/query"
            # Right credentials never spend the budget.
            for _ in range(10):
                assert attacker.post(url, json=query, auth=good).json()["status"] == "UNKNOWN"
            for _ in range(3):
                assert attacker.post(url, json=query, auth=bad).status_code == 401
            throttled = attacker.post(url, json=query, auth=bad)
            assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
            assert throttled.json()["errorCode"] == 103
            # Empty: not even the right password is checked.
            assert attacker.post(url, json=query, auth=good).status_code == 429
            # Another address keeps its own budget; the platform's calls still work.
            assert platform.post(url, json=query, auth=good).status_code == 200
            assert platform.post(url, json=query, auth=bad).status_code == 401
            assert platform.post(url, json=query, auth=good).status_code == 200
            time.sleep(1.1)  # one token back
            assert attacker.post(url, json=query, auth=good).status_code == 200
    finally:
        attacker.close()
        platform.close()
