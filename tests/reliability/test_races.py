"""Races at scale: two ``qwallet serve`` processes on one database, many rounds, both isolation
levels of PostgreSQL (and SQLite).

Each round is one of the concurrency scenarios of ``tests/integration/_helpers_concurrency``, with
its requests spread round-robin over the two processes:

- over-subscription: 100 concurrent withdrawals of 1.00 on a wallet holding exactly K.00 (K drawn
  per round): exactly K hold funds with K distinct qwTransactionIds and the balances K-1 … 0, the
  others get 121; then half are confirmed and half rolled back at once; wallet and reconcile exact;
- duplicate storm: 20 identical concurrent begins (withdrawal and deposit alternate): one hold,
  every success is the same answer byte for byte, the others 134; the same storm on the confirm;
- confirm vs rollback: a confirm and a rollback of the same pending transaction at once: exactly
  one wins (the other gets 133 / 132), replays repeat the race's answers, the wallet is exact.

PostgreSQL runs twice: at READ COMMITTED (the default) and with the database's
``default_transaction_isolation`` set to ``serializable`` (every connection of both servers). The
store retries serialization failures a few times and then answers 134, which the callers here
retry with a jittered backoff, as the contract allows.

Rounds: CI 5 / 25 / 50 per backend, ``QWALLET_LONG=1`` 100 / 500 / 1,000.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwallet.clock import ManualClock
from qwallet.settings import Settings
from tests.conftest import Platform, _pg_admin, fresh_database_url
from tests.integration import _helpers_concurrency as scenarios
from tests.reliability.harness import ServerProcess, record_result, scale

pytestmark = pytest.mark.reliability

OVERSUBSCRIPTION_ROUNDS = scale(5, 100)
STORM_ROUNDS = scale(25, 500)
RACE_ROUNDS = scale(50, 1000)
RACE_BATCH = 25  # confirm-vs-rollback rounds fired at once
PROCESSES = 2
MAX_ATTEMPTS_134 = 400


@dataclass
class Counts:
    attempts: int = 0
    code_134: int = 0


COUNTS = Counts()


async def _patient_post(
    client: httpx.AsyncClient, call: scenarios.Call, retry_134: bool
) -> scenarios.Answer:
    """As the scenarios' own sender, counting attempts, with a jittered exponential backoff on 134
    (serialization failures the store gave up on come back as 134 and are retried)."""
    endpoint, body = call
    for attempt in range(MAX_ATTEMPTS_134):
        COUNTS.attempts += 1
        response = await client.post(
            f"/wallet/{endpoint}", content=body, headers={"Content-Type": "application/json"}
        )
        answer = scenarios.Answer(
            response.status_code,
            json.loads(response.content, parse_float=Decimal),
            response.content,
        )
        if answer.code == 134:
            COUNTS.code_134 += 1
        if not (retry_134 and answer.code == 134):
            return answer
        await asyncio.sleep(min(0.2, 0.005 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.5))
    raise AssertionError(f"still 134 after {MAX_ATTEMPTS_134} attempts: {call}")


@pytest.fixture(params=["sqlite", "postgres-read-committed", "postgres-serializable"])
def race_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    variant = str(request.param)
    for url in fresh_database_url(variant.split("-")[0], tmp_path):
        if variant == "postgres-serializable":
            name = url.rsplit("/", 1)[1]
            asyncio.run(
                _pg_admin(
                    f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'serializable'"
                )
            )
        yield variant, url


def _isolation(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite (BEGIN IMMEDIATE)"
    import asyncpg

    async def show() -> str:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            return str(await connection.fetchval("SHOW transaction_isolation"))
        finally:
            await connection.close()

    return asyncio.run(show())


def test_races_at_scale_across_two_processes(
    race_url: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant, url = race_url
    isolation = _isolation(url)
    if variant == "postgres-serializable":
        assert isolation == "serializable", isolation
    monkeypatch.setattr(scenarios, "_post", _patient_post)
    COUNTS.attempts = COUNTS.code_134 = 0
    rng = random.Random()
    settings = Settings(database_url=url)
    platform = Platform(settings, ManualClock(start_ms=time.time_ns() // 1_000_000))
    servers = [ServerProcess(url, tmp_path / f"serve-{n}.log") for n in range(PROCESSES)]
    problems: list[str] = []
    checks = 0
    rounds = {"oversubscription": 0, "storm": 0, "confirmVsRollback": 0}
    started = time.monotonic()

    def attempt(name: str, run: Any, weight: int) -> None:
        nonlocal checks
        try:
            run()
            checks += weight
        except AssertionError as error:
            problems.append(f"{name}: {str(error)[:500]}")

    try:
        for server in servers:
            server.start()
        urls = [server.url for server in servers]
        for _ in range(OVERSUBSCRIPTION_ROUNDS):
            k = rng.randint(1, 99)
            # codes, distinct ids, balances K-1 … 0, wallet + reconcile twice, every finish.
            weight = 100 + 2 * k + 8 + k
            attempt(
                f"oversubscription k={k}",
                lambda k=k: scenarios.oversubscribed_withdrawals(platform, urls, k=k, n=100),
                weight,
            )
            rounds["oversubscription"] += 1
        for index in range(STORM_ROUNDS):
            kind = "withdrawal" if index % 2 == 0 else "deposit"
            # 20 codes + 20 byte-equal answers, the replay, wallet + reconcile twice, 20 confirms.
            attempt(
                f"storm {kind}",
                lambda kind=kind: scenarios.duplicate_storm(platform, urls, kind, n=20),
                20 + 20 + 1 + 4 + 4 + 20 + 1,
            )
            rounds["storm"] += 1
        done = 0
        batch = 0
        while done < RACE_ROUNDS:
            size = min(RACE_BATCH, RACE_ROUNDS - done)
            kind = "withdrawal" if batch % 2 == 0 else "deposit"
            # per round: the opening, exactly one winner with the right id, the replayed pair;
            # then wallet + reconcile.
            attempt(
                f"confirm vs rollback {kind}",
                lambda kind=kind, size=size: scenarios.confirm_rollback_race(
                    platform, urls, kind, rounds=size
                ),
                5 * size + 4,
            )
            done += size
            batch += 1
            rounds["confirmVsRollback"] += size
        for server in servers:
            assert server.alive(), server.tail()
    finally:
        for server in servers:
            server.stop()
        report = platform.reconcile()
        platform.close()
    checks += 1
    if not report.ok:
        problems.append(f"final reconcile: {report}")
    elapsed = time.monotonic() - started
    record_result(
        "races at scale, 2 processes",
        variant,
        runs=sum(rounds.values()),
        operations=COUNTS.attempts,
        faults=0,
        failures=len(problems),
        invariant_checks=checks,
        isolation=isolation,
        code134=COUNTS.code_134,
        seconds=round(elapsed, 1),
        **rounds,
    )
    assert rounds == {
        "oversubscription": OVERSUBSCRIPTION_ROUNDS,
        "storm": STORM_ROUNDS,
        "confirmVsRollback": RACE_ROUNDS,
    }
    assert not problems, "\n".join(problems[:20])
