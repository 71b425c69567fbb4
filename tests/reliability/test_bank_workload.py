"""Bank workload with a history checker (both backends).

At least 20 concurrent clients run random withdraw / deposit flows, each finalized by confirm or
rollback, over a small set of wallets (some small, so insufficient funds happen too), against a
real ``qwallet serve`` process. Every acknowledged answer is recorded. Afterwards:

- every acknowledged answer matches the final state (the history checker, ``harness``);
- nothing was applied twice: each wallet's balance is its initial balance plus its confirmed
  deposits minus its confirmed withdrawals, and each step has exactly its ledger entries;
- money is conserved: wallets + partner + operator accounts sum to zero, and the partner's account
  holds exactly the confirmed withdrawals minus the confirmed deposits;
- no balance is ever negative, in the database or in any answer.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database_url
from tests.reliability.harness import (
    CENTS,
    Caller,
    CallerStats,
    Flow,
    ServerProcess,
    check_history,
    load_history,
    provision,
    record_result,
    run_flow,
    scale,
)

pytestmark = pytest.mark.reliability

CLIENTS = 24
# Per backend: CI runs ~5,000 operations over both; QWALLET_LONG=1 runs 100,000 on each.
TARGET_OPERATIONS = scale(2_500, 100_000)
# CI: 10 wallets (more contention per wallet); long: the 100 wallets of issue #6.
WALLETS = scale(10, 100)
TIME_LIMIT_S = scale(180, 3600)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(str(request.param), tmp_path)


def test_bank_workload_history_is_consistent(fresh_url: str, tmp_path: Path) -> None:
    backend = "sqlite" if fresh_url.startswith("sqlite") else "postgres"
    rng = random.Random()
    world = provision(fresh_url, player_count=WALLETS, balance_minor=50 * CENTS)
    server = ServerProcess(fresh_url, tmp_path / "server.log")
    flows: list[Flow] = []
    stats = CallerStats()
    started = time.monotonic()

    async def client(http: httpx.AsyncClient) -> None:
        caller = Caller(http, stats)
        deadline = time.monotonic() + TIME_LIMIT_S
        while stats.attempts < TARGET_OPERATIONS and time.monotonic() < deadline:
            flow = Flow(
                rng.choice(world.players),
                "withdrawal" if rng.random() < 0.6 else "deposit",
                f"bank-{secrets.token_hex(8)}",
                rng.randint(1, 10 * CENTS),
            )
            flows.append(flow)
            await run_flow(caller, flow, rng, confirm_share=0.75, think_s=0.01)

    async def drive() -> None:
        async with httpx.AsyncClient(
            base_url=server.url,
            auth=(world.username, world.password),
            timeout=30,
            limits=httpx.Limits(max_connections=CLIENTS),
        ) as http:
            await asyncio.gather(*(client(http) for _ in range(CLIENTS)))

    server.start()
    try:
        asyncio.run(drive())
    finally:
        server.stop()
    elapsed = time.monotonic() - started
    verdict = check_history(fresh_url, world, flows)

    history = load_history(fresh_url)
    partner_total = sum(
        int(e["amount_minor"])
        for e in history.entries
        if e["account"] == "partner" and e["partner_id"] == world.partner_id
    )
    expected_partner = sum(
        f.amount_minor if f.kind == "withdrawal" else -f.amount_minor
        for f in flows
        if f.final == "confirmed"
    )
    verdict.check(
        partner_total == expected_partner,
        f"partner account {partner_total}, confirmed flows say {expected_partner}",
    )
    operator_total = sum(
        int(e["amount_minor"]) for e in history.entries if e["account"] == "operator"
    )
    wallets_total = sum(
        int(p["available_minor"]) + int(p["held_minor"]) + int(p["pending_in_minor"])
        for p in history.players.values()
    )
    verdict.check(
        wallets_total + partner_total + operator_total == 0,
        f"not conserved: wallets {wallets_total} partner {partner_total} operator {operator_total}",
    )
    for flow in flows:
        for ack in flow.acks:
            verdict.check(ack.balance_minor >= 0, f"negative balance answered: {ack}")
    insufficient = sum(1 for f in flows if f.begin_error == 121)
    record_result(
        "bank workload (history checker)",
        backend,
        operations=stats.attempts,
        faults=0,
        failures=len(verdict.problems),
        invariant_checks=verdict.checks,
        holdsOpened=verdict.holds,
        holdsFinalizedByCallers=verdict.holds - verdict.holds_pending,
        holdsLeftPending=verdict.holds_pending,
        clients=CLIENTS,
        flows=len(flows),
        insufficientFunds=insufficient,
        opsPerSecond=round(stats.attempts / elapsed),
        seconds=round(elapsed, 1),
    )
    assert stats.attempts >= TARGET_OPERATIONS, (stats.attempts, elapsed)
    assert stats.http_500 == 0 and stats.transport_errors == 0, stats
    assert not verdict.problems, "\n".join(verdict.problems)
