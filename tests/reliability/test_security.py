"""Security: rate limits, authentication timing, secrets kept out of logs, bandit.

- Rate limits: token buckets per partner and per session token answer HTTP 429, code 104, with
  ``Retry-After``, and a refused call changes nothing.
- Failed authentications: per client address, a bucket of failed authentications; once empty,
  requests whose credentials are not already verified get 429 / 104 with ``Retry-After`` without
  any scrypt (counted), even when they all arrive at once; verified credentials keep working.
- Timing: an unknown username and a wrong password cost the same (medians over interleaved tries,
  every try a cache miss), so response times do not reveal which part was wrong.
- Logs: a server run with failing, refused and unauthenticated calls — and database failures that
  log tracebacks — never writes a password, a session token, an API key or an Authorization value.
- ``bandit -r src``: no high-severity finding.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from qwallet.api import auth as auth_module
from qwallet.api.auth import FailedAuthLimiter
from qwallet.api.ratelimit import RateLimiter, TokenBuckets, retry_after_s
from qwallet.service import api_keys
from qwallet.service.partners import MAX_ACTIVE_CREDENTIALS
from qwallet.settings import Settings
from tests.conftest import LiveServer, Platform, fresh_database_url, postgres_unavailable_reason
from tests.reliability.faults import TcpProxy
from tests.reliability.harness import (
    CENTS,
    LONG,
    ServerProcess,
    money_body,
    provision,
    record_result,
    scale,
)

pytestmark = pytest.mark.reliability

PLAYER_BURST = 5
PARTNER_BURST = 30


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    # Low limits, so that the limiter is reached in a handful of calls.
    return Settings(
        database_url=database_url,
        rate_limit_partner_rps=2.0,
        rate_limit_partner_burst=PARTNER_BURST,
        rate_limit_player_rps=1.0,
        rate_limit_player_burst=PLAYER_BURST,
        # The timing test below sends hundreds of wrong passwords from one address.
        auth_failure_rps=1_000_000.0,
        auth_failure_burst=1_000_000,
    )


# -- the token buckets -----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_refill_and_retry_after() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token back in 1/2 s
    assert buckets.take("b") == 0.0  # keys are independent
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    clock.now += 100
    assert [buckets.take("a") for _ in range(3)] == [0.0] * 3  # refills only up to the burst
    assert buckets.take("a") > 0
    assert retry_after_s(0.0) == 0 and retry_after_s(0.01) == 1 and retry_after_s(1.2) == 2


def test_token_buckets_are_bounded_in_number() -> None:
    buckets = TokenBuckets(1.0, 1, max_buckets=100, clock=FakeClock())
    for index in range(1000):
        buckets.take(index)
    assert len(buckets) == 100


def test_rate_limiter_keys_players_by_partner_and_token() -> None:
    limiter = RateLimiter(1000, 1000, 1.0, 1, clock=FakeClock())
    assert limiter.player(1, "t") == 0
    assert limiter.player(1, "t") == 1
    assert limiter.player(2, "t") == 0  # the same token string at another partner
    assert limiter.partner(1) == 0


def test_failed_auth_limiter_takes_before_and_refunds_after() -> None:
    clock = FakeClock()
    limiter = FailedAuthLimiter(0.5, 2, clock=clock, max_buckets=10)
    assert limiter.acquire("a") == 0.0 and limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(2.0)  # one failure back every 2 s
    assert limiter.retry_after_s(limiter.acquire("a")) == 2
    limiter.refund("a")  # a verification that succeeded gives its token back
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire(None) == 0.0  # an unresolvable address has a bucket too
    clock.now += 1000
    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]  # refills up to the burst
    limiter.refund("a")
    limiter.refund("a")
    limiter.refund("a")
    assert [limiter.acquire("a") for _ in range(3)][2] > 0  # refunds cap at the burst too
    for index in range(100):
        limiter.acquire(index)
    assert len(limiter) == 10


AUTH_FAILURE_BURST = 5
CHECKS_PER_FAILURE = MAX_ACTIVE_CREDENTIALS


def test_failed_authentications_are_limited_per_address_without_scrypt(
    settings: Settings, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 wrong passwords at once from one address: only the burst is hashed (401), the rest get
    429 / 104 with Retry-After; verified credentials keep working; after Retry-After one more
    failure is hashed again."""
    limited = Settings(
        database_url=settings.database_url,
        auth_failure_rps=0.5,
        auth_failure_burst=AUTH_FAILURE_BURST,
    )
    hashes = {"count": 0}
    verify = auth_module.verify_password

    def counting_verify(password: bytes, encoded: str) -> bool:
        hashes["count"] += 1
        return verify(password, encoded)

    monkeypatch.setattr(auth_module, "verify_password", counting_verify)
    username, password = platform.create_partner()
    other_user, other_password = platform.create_partner()
    token = platform.create_session(platform.create_player("1.00"), username)
    server = LiveServer(limited, platform.clock)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            good = client.post(
                "/wallet/getBalance", json={"token": token}, auth=(username, password)
            )
            assert good.status_code == 200, good.text  # verified once, then cached
            hashed_before = hashes["count"]

            async def storm() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                    return list(
                        await asyncio.gather(
                            *(
                                http.post(
                                    "/wallet/getBalance",
                                    json={"token": token},
                                    auth=(username, f"wrong-{index}"),
                                )
                                for index in range(50)
                            )
                        )
                    )

            answers = asyncio.run(storm())
            statuses = sorted(a.status_code for a in answers)
            refused = [a for a in answers if a.status_code == 429]
            hashed_by_storm = hashes["count"] - hashed_before
            assert statuses.count(401) == AUTH_FAILURE_BURST, statuses
            assert len(refused) == 50 - AUTH_FAILURE_BURST, statuses
            # Every failure runs the same number of hash checks (padded with dummies).
            assert hashed_by_storm == AUTH_FAILURE_BURST * CHECKS_PER_FAILURE, hashed_by_storm
            assert all(a.json()["errorCode"] == 104 for a in refused)
            assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
            # Verified credentials from the same address are not affected.
            again = client.post(
                "/wallet/getBalance", json={"token": token}, auth=(username, password)
            )
            assert again.status_code == 200 and "errorCode" not in again.json(), again.text
            # Not yet verified credentials from a throttled address wait like everyone there.
            unverified = client.post(
                "/wallet/getBalance", json={"token": token}, auth=(other_user, other_password)
            )
            assert unverified.status_code == 429, unverified.text
            assert hashes["count"] - hashed_before == AUTH_FAILURE_BURST * CHECKS_PER_FAILURE
            # A burst of one valid header not yet verified (e.g. when its cache entry expired)
            # shares one verification; none of it is refused, even from this throttled address.
            fresh_user, fresh_password = platform.create_partner()
            fresh_token = platform.create_session(platform.create_player("1.00"), fresh_user)

            async def valid_burst() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                    return list(
                        await asyncio.gather(
                            *(
                                http.post(
                                    "/wallet/getBalance",
                                    json={"token": fresh_token},
                                    auth=(fresh_user, fresh_password),
                                )
                                for _ in range(30)
                            )
                        )
                    )

            hashed_mid = hashes["count"]
            # The storm emptied the bucket: wait for one token to come back (0.5 per second).
            time.sleep(2.1)
            burst = asyncio.run(valid_burst())
            assert [a.status_code for a in burst] == [200] * 30, [a.text for a in burst][:3]
            assert hashes["count"] - hashed_mid == 1, hashes["count"] - hashed_mid
            hashed_before += 1
            time.sleep(int(refused[0].headers["retry-after"]))
            late = client.post("/wallet/getBalance", json={"token": token}, auth=(username, "x"))
            assert late.status_code == 401, late.text  # a token came back: hashed and refused
    finally:
        server.stop()
    record_result(
        "failed-authentication limit per address",
        "sqlite" if settings.database_url.startswith("sqlite") else "postgres",
        operations=84,
        faults=0,
        failures=0,
        invariant_checks=9,
        scryptRuns=hashes["count"] - hashed_before,
        refused=len(refused),
    )


# -- over HTTP -------------------------------------------------------------------------------


def test_player_limit_answers_429_104_with_retry_after_and_changes_nothing(  # type: ignore[no-untyped-def]
    new_wallet, backend: str
) -> None:
    wallet = new_wallet(balance="10.00")
    answers = [
        wallet.raw("getBalance", json.dumps({"token": wallet.token}).encode())
        for _ in range(PLAYER_BURST)
    ]
    assert all(a.status_code == 200 for a in answers)
    refused = wallet.raw(
        "withdraw",
        money_body(wallet.token, "limited-1", 1 * CENTS),
        headers={"X-Request-Id": "rl-1"},
    )
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["errorCode"] == 104 and body["errorDescription"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-request-id"] == "rl-1"
    time.sleep(int(refused.headers["retry-after"]))
    # The refused withdraw was not processed: the same call now runs for the first time.
    status, answer = wallet.money("withdraw", "limited-1", "1.00")
    assert status == 200 and answer["balance"]["amount"] == 9.00, answer
    record_result(
        "rate limit per session token", backend, operations=PLAYER_BURST + 2, faults=0,
        failures=0, invariant_checks=5,
    )  # fmt: skip


def test_partner_limit_spans_all_its_tokens(platform: Platform, server: LiveServer) -> None:
    username, password = platform.create_partner()
    tokens = [
        platform.create_session(platform.create_player("1.00"), username)
        for _ in range(PARTNER_BURST // PLAYER_BURST + 2)
    ]
    statuses: list[int] = []
    with httpx.Client(base_url=server.url, auth=(username, password)) as client:
        for token in tokens:
            for _ in range(PLAYER_BURST):
                statuses.append(
                    client.post("/wallet/getBalance", json={"token": token}).status_code
                )
        refused = client.post("/wallet/getBalance", json={"token": tokens[0]})
    assert statuses.count(200) <= PARTNER_BURST + 2  # a little refill during the loop
    assert 429 in statuses
    assert refused.status_code == 429 and "partner" in refused.json()["errorDescription"]


# -- timing ----------------------------------------------------------------------------------


def test_unknown_user_and_wrong_password_take_the_same_time(
    platform: Platform, server: LiveServer, backend: str
) -> None:
    """Medians over interleaved tries; each try uses a new wrong password (never cached)."""
    if backend != "sqlite" and not LONG:
        pytest.skip("the authentication path is the same on both backends; CI measures it once")
    username, _ = platform.create_partner()
    tries = scale(50, 300)
    unknown: list[float] = []
    wrong: list[float] = []
    with httpx.Client(base_url=server.url) as client:
        client.post("/wallet/getBalance", json={"token": "x"}, auth=("warm-up", "x"))
        for index in range(tries):
            for user, sink in (((f"nobody-{index}"), unknown), (username, wrong)):
                started = time.perf_counter()
                answer = client.post(
                    "/wallet/getBalance", json={"token": "x"}, auth=(user, secrets.token_hex(8))
                )
                sink.append(time.perf_counter() - started)
                assert answer.status_code == 401
    median_unknown, median_wrong = statistics.median(unknown), statistics.median(wrong)
    ratio = max(median_unknown, median_wrong) / min(median_unknown, median_wrong)
    record_result(
        "auth timing: unknown user vs wrong password", backend, operations=2 * tries,
        faults=0, failures=int(ratio > 1.5), invariant_checks=1,
        medianUnknownMs=round(median_unknown * 1000, 1), medianWrongMs=round(median_wrong * 1000, 1),
    )  # fmt: skip
    # Generous: scrypt dominates both paths; a missing dummy hash would be a ~50x difference.
    assert ratio <= 1.5, (median_unknown, median_wrong)


# -- secrets in logs -------------------------------------------------------------------------


def test_secrets_never_reach_the_logs(tmp_path: Path) -> None:
    """Run ``qwallet serve`` at debug level with logs captured; make failing, refused and
    unauthenticated calls — through a proxy that is cut mid-run when PostgreSQL is available, so
    the database-failure path (tracebacks) is logged too — then grep the logs for every secret."""
    use_postgres = postgres_unavailable_reason() is None
    backend = "postgres" if use_postgres else "sqlite"
    for url in fresh_database_url(backend, tmp_path):
        world = provision(url, player_count=1, balance_minor=5 * CENTS)
        key = _api_key(url)
        proxy = None
        server_url = url
        if use_postgres:
            proxy = TcpProxy(urlsplit(url).port or 5432)
            proxy.start()
            parts = urlsplit(url)
            server_url = parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl()
        log = tmp_path / "server.log"
        server = ServerProcess(server_url, log, log_level="debug")
        server.start()
        token = world.players[0].token
        secrets_to_find = {
            "password": world.password,
            "token": token,
            "api key": key,
            "basic": base64.b64encode(f"{world.username}:{world.password}".encode()).decode(),
            "wrong password": "Wr0ng-" + secrets.token_hex(8),
        }
        try:
            json_type = {"Content-Type": "application/json"}  # else refused before any store
            with httpx.Client(base_url=server.url, timeout=30) as client:
                good = (world.username, world.password)
                client.post("/wallet/getBalance", json={"token": token}, auth=good)
                client.post(
                    "/wallet/getBalance",
                    json={"token": token},
                    auth=(world.username, secrets_to_find["wrong password"]),
                )
                client.post(
                    "/wallet/getBalance", json={"token": token}, auth=("nobody", world.password)
                )
                client.post(
                    "/wallet/withdraw",
                    content=money_body(token, "s-1", 999 * CENTS),
                    auth=good,
                    headers=json_type,
                )
                client.post(
                    "/wallet/withdraw",
                    content=b'{"token": "' + token.encode() + b'", "x": 1}',
                    auth=good,
                    headers=json_type,
                )
                client.post(
                    "/wallet/withdraw", content=b"\xff\xfe not json", auth=good, headers=json_type
                )
                client.post(
                    "/api/sessions",
                    json={"playerId": "p"},
                    headers={"Authorization": f"Bearer {key}x"},
                )
                client.post(
                    "/api/sessions",
                    json={"playerId": "p", "partner": "q"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                if proxy is not None:
                    proxy.refuse(True)
                    proxy.cut()
                    for endpoint in ("getBalance", "withdraw"):
                        client.post(
                            f"/wallet/{endpoint}",
                            content=money_body(token, "s-2", 1),
                            auth=good,
                            headers=json_type,
                        )
                    proxy.refuse(False)
        finally:
            server.stop()
            if proxy is not None:
                proxy.stop()
        text = log.read_text(errors="replace")
        leaked = [name for name, value in secrets_to_find.items() if value in text]
        record_result(
            "secrets never in logs", backend, operations=10, faults=int(proxy is not None),
            failures=len(leaked), invariant_checks=len(secrets_to_find),
            logLines=len(text.splitlines()),
        )  # fmt: skip
        assert text.strip(), "the server logged nothing at debug level"
        if proxy is not None:
            assert "unexpected failure" in text, "the database failure was not logged"
        assert not leaked, f"secrets in the logs: {leaked}"


def _api_key(url: str) -> str:
    from qwallet.clock import SystemClock
    from qwallet.store.factory import open_store

    async def create() -> str:
        store = await open_store(Settings(database_url=url))
        try:
            return await api_keys.create_api_key(store, "logs", SystemClock().now_ms())
        finally:
            await store.close()

    return asyncio.run(create())


# -- static analysis -------------------------------------------------------------------------


def test_bandit_finds_nothing_of_high_severity() -> None:
    bandit = Path(sys.executable).parent / "bandit"
    if not bandit.exists() and shutil.which("bandit") is None:
        pytest.skip("bandit is in the test extra: pip install -e '.[test]'")
    source = Path(__file__).resolve().parents[2] / "src"
    result = subprocess.run(
        [str(bandit) if bandit.exists() else "bandit", "-r", str(source), "-f", "json", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    high = [r for r in report["results"] if r["issue_severity"] == "HIGH"]
    record_result(
        "bandit -r src", "-", operations=len(report["results"]), faults=0, failures=len(high),
        invariant_checks=1, mediumOrLow=len(report["results"]) - len(high),
    )  # fmt: skip
    assert not high, json.dumps(high, indent=2)
