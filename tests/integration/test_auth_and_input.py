"""Authentication, allow-list, request ids and the bad-input matrix: refused, and nothing changes."""

from __future__ import annotations

import base64
import importlib.metadata
from typing import Any

import httpx
import pytest

from qwallet.api.auth import ClientAddressResolver, parse_address
from tests.conftest import LiveServer, Platform, Wallet


def is_error(response: httpx.Response, status: int, code: int) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and body.get("errorCode") == code
        and isinstance(body.get("errorDescription"), str)
        and "x-request-id" in response.headers
    )


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


WITHDRAW = b'{"token": "%s", "mmTransactionId": "auth-1", "amount": {"amount": 1.00, "currencyCode": "XAG"}}'


def test_authentication_matrix(new_wallet: Any, server: LiveServer, platform: Platform) -> None:
    wallet: Wallet = new_wallet("10.00")
    body = WITHDRAW % wallet.token.encode()
    user, password = wallet.username.encode(), wallet.password.encode()
    bad_headers = [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        basic(user, b"wrong-password"),
        basic(b"nobody", password),
        basic(user, password + b"x"),
        basic("üser".encode(), password),
        basic(user, "pässword".encode()),
        basic(b"", password),
        "Basic " + "A" * 5000,
    ]
    with httpx.Client(base_url=server.url) as client:
        for header in bad_headers:
            headers = {"Content-Type": "application/json"}
            if header is not None:
                headers["Authorization"] = header
            response = client.post("/wallet/withdraw", content=body, headers=headers)
            assert is_error(response, 401, 103), (header, response.text)
            assert response.headers["www-authenticate"].startswith("Basic")
    assert platform.player(wallet.player_id)["available"] == "10.00"
    # The right credentials work, the scheme name is case-insensitive.
    response = httpx.post(
        f"{server.url}/wallet/withdraw",
        content=body,
        headers={
            "Authorization": basic(user, password).replace("Basic", "basic"),
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200, response.text


def test_credential_rotation_with_overlap(new_wallet: Any, platform: Platform) -> None:
    from qwallet.service import partners

    wallet: Wallet = new_wallet("10.00")
    new = platform.run(partners.rotate_credentials(platform.store, wallet.username, 0))
    old_auth, new_auth = (wallet.username, wallet.password), (new.username, new.password)
    token_body = {"token": wallet.token}
    url = str(wallet.client.base_url)
    # Both valid during the overlap.
    for auth in (old_auth, new_auth):
        assert httpx.post(f"{url}/wallet/getBalance", json=token_body, auth=auth).status_code == 200
    platform.run(partners.revoke_old_credentials(platform.store, wallet.username, 0))
    # A fresh server process would refuse the old one at once; this one within the cache TTL.
    # Use a credential the cache has never seen to prove the database side.
    assert httpx.post(f"{url}/wallet/getBalance", json=token_body, auth=new_auth).status_code == 200


def test_revoked_credential_is_refused_within_the_cache_ttl(
    settings: Any, clock: Any, platform: Platform
) -> None:
    """A short TTL on a second live server: steady use of the new credential never fails, the
    revoked one is refused once its TTL has run out (the re-check is a store lookup)."""
    import dataclasses
    import time

    from qwallet.service import partners

    ttl_s = 0.5
    live = LiveServer(dataclasses.replace(settings, credential_cache_ttl_s=ttl_s), clock)
    live.start()
    try:
        username, password = platform.create_partner()
        token = platform.create_session(platform.create_player("5.00"), username)
        new = platform.run(partners.rotate_credentials(platform.store, username, 0))
        old_auth, new_auth = (username, password), (new.username, new.password)
        url, body = f"{live.url}/wallet/getBalance", {"token": token}
        for auth in (old_auth, new_auth):
            assert httpx.post(url, json=body, auth=auth).status_code == 200
        platform.run(partners.revoke_old_credentials(platform.store, username, 0))
        revoked_at = time.monotonic()
        with httpx.Client(timeout=10) as client:
            while client.post(url, json=body, auth=old_auth).status_code == 200:
                assert client.post(url, json=body, auth=new_auth).status_code == 200
                assert time.monotonic() - revoked_at < ttl_s + 2.0, "old credential still valid"
                time.sleep(0.02)
            refused = client.post(url, json=body, auth=old_auth)
            assert is_error(refused, 401, 103)
            for _ in range(3):
                assert client.post(url, json=body, auth=new_auth).status_code == 200
                time.sleep(ttl_s)
    finally:
        live.stop()


def test_nul_characters_are_refused_and_change_nothing(
    new_wallet: Any, server: LiveServer, platform: Platform
) -> None:
    """PostgreSQL cannot store U+0000; a request carrying one is refused before any store sees
    it, the same way on both backends (the long fuzzing run found a 500 for a username)."""
    wallet: Wallet = new_wallet("10.00")
    refused = httpx.post(
        f"{server.url}/wallet/getBalance",
        json={"token": wallet.token},
        headers={"Authorization": basic(wallet.username.encode() + b"\x00", b"x")},
    )
    assert is_error(refused, 401, 103)
    token = wallet.token.encode()
    rollback = b'{"token": "%s", "mmTransactionId": "nul-1", "rollbackReason": "a\\u0000"}' % token
    assert is_error(wallet.raw("rollbackWithdrawal", rollback), 400, 101)
    deposit = (
        b'{"token": "%s", "mmTransactionId": "nul-2", "amount": {"amount": 1.00,'
        b' "currencyCode": "XAG"}, "txDescription": "\\u0000"}' % token
    )
    assert is_error(wallet.raw("deposit", deposit), 400, 101)
    assert platform.player(wallet.player_id)["available"] == "10.00"
    # The refused rollback left no record behind: the same id still withdraws.
    status, answer = wallet.money("withdraw", "nul-1", "1.00")
    assert status == 200 and answer["balance"]["amount"] == 9, answer


def test_ip_allow_list_refuses_and_changes_nothing(new_wallet: Any, platform: Platform) -> None:
    wallet: Wallet = new_wallet("10.00", ip_allow=["10.9.8.0/24"])
    response = wallet.raw("withdraw", WITHDRAW % wallet.token.encode())
    assert is_error(response, 403, 103)
    # Spoofed X-Forwarded-For from an untrusted peer (we are 127.0.0.1) is ignored.
    response = wallet.raw(
        "withdraw", WITHDRAW % wallet.token.encode(), headers={"X-Forwarded-For": "10.9.8.7"}
    )
    assert is_error(response, 403, 103)
    assert platform.player(wallet.player_id)["available"] == "10.00"
    allowed: Wallet = new_wallet("10.00", ip_allow=["127.0.0.0/8"])
    assert allowed.raw("withdraw", WITHDRAW % allowed.token.encode()).status_code == 200


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    resolver = ClientAddressResolver(("127.0.0.1/32", "10.0.0.0/8"))
    assert resolver.resolve("127.0.0.1", b"203.0.113.9") == parse_address("203.0.113.9")
    # right-most untrusted hop wins; what the client wrote on the left is ignored
    assert resolver.resolve("127.0.0.1", b"1.2.3.4, 203.0.113.9, 10.1.1.1") == parse_address(
        "203.0.113.9"
    )
    assert resolver.resolve("198.51.100.7", b"203.0.113.9") == parse_address("198.51.100.7")
    assert resolver.resolve("127.0.0.1", b"garbage") is None
    assert ClientAddressResolver(()).resolve("127.0.0.1", b"1.2.3.4") == parse_address("127.0.0.1")


def test_request_id_echoed_or_generated(new_wallet: Any) -> None:
    wallet: Wallet = new_wallet("1.00")
    given = wallet.client.post(
        "/wallet/getBalance", json={"token": wallet.token}, headers={"X-Request-Id": "abc-123"}
    )
    assert given.headers["x-request-id"] == "abc-123"
    generated = wallet.client.post("/wallet/getBalance", json={"token": wallet.token})
    assert len(generated.headers["x-request-id"]) == 32
    assert wallet.client.get("/healthz").headers["x-request-id"]


BAD_BODIES: list[tuple[bytes, int, int]] = [
    # (body, http status, error code)
    (b"", 400, 101),
    (b"not json", 400, 101),
    (b"[]", 400, 101),
    (b"null", 400, 101),
    (b'{"token": "T"', 400, 101),
    (b'{"mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}}', 400, 101),
    (
        b'{"token": 5, "mmTransactionId": "x", "amount": {"amount": 1, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": "1.00", "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": null, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (b'{"token": "T", "mmTransactionId": "x", "amount": 1.00}', 400, 101),
    (b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00}}', 400, 101),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG", "extra": 1}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}, "isAdmin": true}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "", "amount": {"amount": 1.00, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "'
        + b"x" * 65
        + b'", "amount": {"amount": 1.00, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "caf\\u00e9", "amount": {"amount": 1.00, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "'
        + b"t" * 65
        + b'", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}, "txDescription": "'
        + b"d" * 256
        + b'"}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}, "txDescription": 7}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 01.00, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": .5, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "\xff\xfe", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    # U+0000 cannot be stored by PostgreSQL: malformed on every backend (found by fuzzing)
    (
        b'{"token": "T\\u0000", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}}',
        400,
        101,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "XAG"}, "txDescription": "a\\u0000b"}',
        400,
        101,
    ),
    # business errors on well-formed requests: HTTP 200
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": NaN, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": Infinity, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": -Infinity, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 2.3e2, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1E+400, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 0, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": -5.00, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.005, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1234567890123456789, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 0.0000000000000000001, "currencyCode": "XAG"}}',
        200,
        102,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "EUR"}}',
        200,
        120,
    ),
    (
        b'{"token": "T", "mmTransactionId": "x", "amount": {"amount": 1.00, "currencyCode": "xag"}}',
        200,
        120,
    ),
]


@pytest.mark.parametrize("body, status, code", BAD_BODIES)
def test_bad_withdraw_bodies(
    new_wallet: Any, platform: Platform, body: bytes, status: int, code: int
) -> None:
    wallet: Wallet = new_wallet("10.00")
    response = wallet.raw("withdraw", body.replace(b'"T"', f'"{wallet.token}"'.encode()))
    assert is_error(response, status, code), response.text
    assert platform.player(wallet.player_id)["available"] == "10.00"
    assert platform.player(wallet.player_id)["held"] == "0.00"


def test_transport_level_refusals(new_wallet: Any, server: LiveServer) -> None:
    wallet: Wallet = new_wallet("10.00")
    huge = b'{"token": "' + b"x" * (70 * 1024) + b'"}'
    assert is_error(wallet.raw("getBalance", huge), 413, 101)
    assert is_error(
        wallet.raw("getBalance", b'{"token": "x"}', headers={"Content-Type": "text/plain"}),
        400,
        101,
    )
    assert is_error(wallet.client.get("/wallet/getBalance"), 405, 101)
    assert is_error(wallet.raw("noSuchEndpoint", b"{}"), 404, 101)
    # Wrong credentials win over a bad body: nothing is parsed before authentication.
    response = httpx.post(f"{server.url}/wallet/withdraw", content=huge)
    assert is_error(response, 401, 103)


def test_health_ready_metrics_openapi(new_wallet: Any, server: LiveServer) -> None:
    wallet: Wallet = new_wallet("10.00")
    wallet.money("withdraw", "metric-1", "1.00")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").json() == {
            "status": "ok",
            "version": importlib.metadata.version("qwallet"),
        }
        assert client.get("/readyz").json() == {"status": "ok"}
        metrics = client.get("/metrics").text
        assert 'qwallet_requests_total{code="0",endpoint="withdraw"}' in metrics
        assert "qwallet_request_duration_seconds_bucket" in metrics
        assert "qwallet_pending_holds " in metrics
        document = client.get("/openapi.json").json()
        assert document["openapi"].startswith("3.1")
        assert "/wallet/withdraw" in document["paths"]
        page = client.get("/docs/api")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert "http://" not in page.text.replace("http://127.0.0.1", "")  # no CDN
