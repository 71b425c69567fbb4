"""WalletClient and the flows against a tiny real HTTP stub on loopback: 5xx, timeouts,
refused connections, exactly as the network produces them."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kit_support import serve
from qwallet_partner import (
    FakeClock,
    Money,
    NotAllowedError,
    OtherError,
    PartnerKit,
    RateLimitedError,
    SQLiteStore,
    UnexpectedResponseError,
    WalletClient,
    WalletConnectionError,
    WalletTimeoutError,
)

SLOW_S = 1.0
TIMEOUT_S = 0.2


class Stub:
    """Records every request; answers per endpoint from ``behaviour``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.behaviour: dict[str, str] = {}

    async def endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        self.requests.append((name, dict(request.headers), body))
        behaviour = self.behaviour.get(name, "ok")
        if behaviour == "slow":
            await asyncio.sleep(SLOW_S)
        if behaviour == "500":
            return JSONResponse({"errorCode": 100, "errorDescription": "db down"}, 500)
        if behaviour == "503":
            return PlainTextResponse("Service Unavailable", 503)
        if behaviour == "401":
            return PlainTextResponse("", 401)
        if behaviour == "429":
            body = {"errorCode": 104, "errorDescription": "Rate limited (player)."}
            return JSONResponse(body, 429, headers={"Retry-After": "3"})
        if behaviour == "429-proxy":
            # A proxy's 429: no contract body, Retry-After as an HTTP date.
            later = email.utils.formatdate(time.time() + 3600, usegmt=True)
            return PlainTextResponse("Too Many Requests", 429, headers={"Retry-After": later})
        if behaviour == "garbage":
            return PlainTextResponse("<html>hello</html>", 200)
        parsed = json.loads(body)
        return Response(
            b'{"mmTransactionId": "%s", "qwTransactionId": "q-1", '
            b'"balance": {"amount": 51800.00, "currencyCode": "XAG"}}'
            % parsed["mmTransactionId"].encode(),
            media_type="application/json",
        )

    def names(self) -> list[str]:
        return [name for name, _, _ in self.requests]


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[Stub, str]]:
    stub = Stub()
    app = Starlette(routes=[Route("/wallet/{name}", stub.endpoint, methods=["POST"])])
    with serve(app) as url:
        yield stub, url


@pytest.fixture
def fresh(stub: tuple[Stub, str]) -> tuple[Stub, str]:
    stub[0].requests.clear()
    stub[0].behaviour.clear()
    return stub


def client(url: str) -> WalletClient:
    return WalletClient(url, "JohnDoe", "MyPass", timeout_s=TIMEOUT_S)


ONE = Money(Decimal("230.00"), "XAG")


def test_wire_format(fresh: tuple[Stub, str]) -> None:
    stub, url = fresh

    async def main() -> None:
        async with client(url) as c:
            result = await c.withdraw(
                "0fabcdc4-fe07-44f2-b968-93da3b324898", "1234abcd", ONE, "Test Shopping."
            )
        assert result.balance.amount == Decimal("51800.00")
        assert str(result.balance.amount) == "51800.00"

    asyncio.run(main())
    (name, headers, body) = stub.requests[0]
    assert name == "withdraw"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"JohnDoe:MyPass").decode()
    assert headers["authorization"] == "Basic Sm9obkRvZTpNeVBhc3M="
    assert headers["content-type"] == "application/json"
    assert len(headers["x-request-id"]) >= 16
    assert body == (
        b'{"token":"0fabcdc4-fe07-44f2-b968-93da3b324898","mmTransactionId":"1234abcd",'
        b'"amount":{"amount":230.00,"currencyCode":"XAG"},"txDescription":"Test Shopping."}'
    )


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("500", OtherError),
        ("503", UnexpectedResponseError),
        ("garbage", UnexpectedResponseError),
        ("slow", WalletTimeoutError),
        ("401", NotAllowedError),
        ("429", RateLimitedError),
        ("429-proxy", RateLimitedError),
    ],
)
def test_failures_over_http(
    fresh: tuple[Stub, str], behaviour: str, expected: type[Exception]
) -> None:
    stub, url = fresh
    stub.behaviour["withdraw"] = behaviour

    async def main() -> None:
        async with client(url) as c:
            await c.withdraw("tok", "w-1", ONE)

    with pytest.raises(expected) as info:
        asyncio.run(main())
    assert stub.names() == ["withdraw"]  # one request, no retry
    if isinstance(info.value, RateLimitedError):
        assert info.value.code == 104 and info.value.http_status == 429
        expected_s = 3.0 if behaviour == "429" else 3600.0
        assert info.value.retry_after_s == pytest.approx(expected_s, abs=2)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the call: nothing listens

    async def main() -> None:
        async with client(f"http://127.0.0.1:{port}") as c:
            await c.get_balance("tok")

    with pytest.raises(WalletConnectionError):
        asyncio.run(main())


@pytest.mark.parametrize("behaviour", ["500", "slow", "503"])
def test_flow_rolls_back_after_unknown_withdraw(
    fresh: tuple[Stub, str], db_path: Path, behaviour: str
) -> None:
    stub, url = fresh
    stub.behaviour["withdraw"] = behaviour

    async def main() -> None:
        kit = PartnerKit(client(url), SQLiteStore(db_path), clock=FakeClock())
        with pytest.raises((OtherError, WalletTimeoutError, UnexpectedResponseError)):
            async with kit.withdrawal("tok", ONE):
                raise AssertionError("the block must not run")
        await kit.aclose()

    asyncio.run(main())
    assert stub.names() == ["withdraw", "rollbackWithdrawal"]
    withdraw_id = json.loads(stub.requests[0][2])["mmTransactionId"]
    assert json.loads(stub.requests[1][2])["mmTransactionId"] == withdraw_id
