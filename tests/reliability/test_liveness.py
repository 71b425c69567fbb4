"""Liveness: every hold reaches a final state, also those a partner never finalizes.

A real ``qwallet serve`` (both backends) runs withdraw → confirm | rollback flows whose callers
retry as the contract allows, while it is SIGKILLed and restarted at random moments. Beside them,
a partner that *never finalizes* opens withdrawals (begin only, retried until answered) and walks
away. Each abandoned withdrawal gets a fate in the partner kit's records: the partner decided
*confirmed*, decided *rolled back*, has *no record* (UNKNOWN), or is still *pending* and decides
(confirmed) only later.

After the load the history checker proves the callers' flows (every acknowledged answer, nothing
applied twice, reconcile clean) with the abandoned holds still pending. Then the hold resolver runs
against the kit's real Query Withdrawal endpoint on loopback, with a manual clock moved past the
hold window (and, for the pending fate, past the retry delay): afterwards no transaction is
pending, each abandoned hold is in the state its fate says (CONFIRMED → confirmed; ROLLED_BACK or
UNKNOWN → rolled back), and the full history check passes with every hold final.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from qwallet.clock import ManualClock
from qwallet.partner import QueryWithdrawalApp, SQLiteStore
from qwallet.resolver import HoldResolver
from qwallet.settings import Settings
from qwallet.store.factory import open_store
from tests.conftest import fresh_database_url
from tests.partner.conftest import serve
from tests.reliability.harness import (
    CENTS,
    Ack,
    Caller,
    CallerStats,
    CallFailed,
    Flow,
    ServerProcess,
    World,
    amount_text,
    check_history,
    load_history,
    money_body,
    provision,
    record_result,
    scale,
)
from tests.reliability.test_crash import _drive

pytestmark = pytest.mark.reliability

KILLS = scale(3, 30)
MIN_FLOWS = scale(150, 3000)
ABANDONED = scale(40, 400)
FATES = ("confirmed", "rolled_back", "unknown", "pending")
QUERY_AUTH = ("qwallet", "query-" + secrets.token_hex(6))
MAX_PASSES = 10


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(str(request.param), tmp_path)


async def _abandon(
    server: ServerProcess, world: World, flows: list[Flow], stats: CallerStats, rng: random.Random
) -> None:
    """Begin withdrawals and never finalize them (retrying the begin until it is answered)."""
    async with httpx.AsyncClient(
        base_url=server.url,
        auth=(world.username, world.password),
        timeout=httpx.Timeout(15.0, connect=2.0),
    ) as client:
        caller = Caller(client, stats)
        for index in range(ABANDONED):
            flow = Flow(
                rng.choice(world.players),
                "withdrawal",
                f"abandoned-{index}-{secrets.token_hex(4)}",
                rng.randint(1, 5 * CENTS),
            )
            flows.append(flow)
            body = money_body(flow.player.token, flow.mm_transaction_id, flow.amount_minor)
            try:
                status, payload, attempts = await caller.call("withdraw", body)
            except CallFailed:
                flow.begin_error = -1
                continue
            if status == 200 and "errorCode" not in payload:
                flow.acks.append(
                    Ack(
                        "withdraw",
                        str(payload["mmTransactionId"]),
                        str(payload["qwTransactionId"]),
                        round(float(payload["balance"]["amount"]) * CENTS),
                        attempts,
                    )
                )
            else:
                flow.begin_error = int(payload.get("errorCode", -1))
            await asyncio.sleep(rng.uniform(0.0, 0.05))


async def _seed_kit(kit_db: Path, flow: Flow, qw_id: str, fate: str) -> None:
    store = SQLiteStore(kit_db)
    try:
        if fate == "unknown":
            return
        amount = Decimal(amount_text(flow.amount_minor))
        await store.start_transaction(
            "withdrawal", flow.mm_transaction_id, flow.player.token, amount, "XAG", None, 1.0
        )
        await store.mark_pending("withdrawal", flow.mm_transaction_id, qw_id, 2.0)
        if fate in ("confirmed", "rolled_back"):
            operation = "confirm" if fate == "confirmed" else "rollback"
            await store.decide("withdrawal", flow.mm_transaction_id, operation, None, 3.0)
    finally:
        await store.close()


async def _decide_late(kit_db: Path, mm_ids: list[str]) -> None:
    store = SQLiteStore(kit_db)
    try:
        for mm_id in mm_ids:
            await store.decide("withdrawal", mm_id, "confirm", None, 4.0)
    finally:
        await store.close()


async def _configure_query(database_url: str, partner_id: int, url: str) -> None:
    store = await open_store(Settings(database_url=database_url))
    try:
        async with store.transaction() as tx:
            await tx.execute(
                "UPDATE partners SET query_url = $1, query_username = $2, query_password = $3"
                " WHERE id = $4",
                url,
                QUERY_AUTH[0],
                QUERY_AUTH[1],
                partner_id,
            )
    finally:
        await store.close()


async def _resolve(
    database_url: str, pending_mm_ids: list[str], kit_db: Path
) -> tuple[int, int, int]:
    """Resolver passes with a manual clock past the window until nothing is pending; the
    partner's late decisions are written after the first pass. Returns (passes, final
    resolutions, retry-laters)."""
    settings = Settings(
        database_url=database_url, hold_resolver_interval_s=0, hold_query_timeout_s=5.0
    )
    clock = ManualClock(start_ms=time.time_ns() // 1_000_000 + (settings.hold_window_s + 60) * 1000)
    store = await open_store(settings)
    finals = retries = passes = 0
    try:
        async with HoldResolver(store, settings, clock) as resolver:
            while passes < MAX_PASSES:
                outcomes = await resolver.run_once()
                passes += 1
                for outcome in outcomes:
                    if outcome.resolution.action == "retry_later":
                        retries += 1
                    else:
                        finals += 1
                if passes == 1:
                    await _decide_late(kit_db, pending_mm_ids)
                async with store.transaction() as tx:
                    left = await tx.fetchrow(
                        "SELECT COUNT(*) AS n FROM transactions WHERE state = 'pending'"
                    )
                if left is not None and int(left["n"]) == 0:
                    break
                clock.advance(settings.hold_retry_max_s * 1000 + 1000)
    finally:
        await store.close()
    return passes, finals, retries


def test_every_hold_reaches_a_final_state(fresh_url: str, tmp_path: Path) -> None:
    backend = "sqlite" if fresh_url.startswith("sqlite") else "postgres"
    rng = random.Random()
    world = provision(fresh_url, player_count=8, balance_minor=500 * CENTS)
    kit_db = tmp_path / "kit.db"
    kit_store = SQLiteStore(kit_db)
    server = ServerProcess(fresh_url, tmp_path / "server.log")
    abandoned: list[Flow] = []
    abandon_stats = CallerStats()
    started = time.monotonic()
    with serve(QueryWithdrawalApp(kit_store, [QUERY_AUTH])) as kit_base:
        asyncio.run(_configure_query(fresh_url, world.partner_id, kit_base + "/query"))
        server.start()
        try:

            async def load() -> tuple[list[Flow], CallerStats, int]:
                drive = asyncio.create_task(
                    _drive(server, world, kills=KILLS, min_flows=MIN_FLOWS, rng=rng)
                )
                await _abandon(server, world, abandoned, abandon_stats, rng)
                return await drive

            flows, stats, kills = asyncio.run(load())
            assert server.alive(), server.tail()
        finally:
            server.stop()
        # Before the resolver: the callers' flows are final, the abandoned holds pending.
        before = check_history(fresh_url, world, flows + abandoned, all_final=False)
        history = load_history(fresh_url)
        rows = {
            str(t["mm_transaction_id"]): t
            for t in history.transactions
            if int(t["partner_id"]) == world.partner_id
        }
        fates: dict[str, str] = {}
        for flow in abandoned:
            row = rows.get(flow.mm_transaction_id)
            if row is None or row["state"] != "pending":
                continue  # refused (121) or never reached the database
            fate = rng.choice(FATES)
            fates[flow.mm_transaction_id] = fate
            asyncio.run(_seed_kit(kit_db, flow, str(row["qw_transaction_id"]), fate))
        pending_before = sum(1 for t in rows.values() if t["state"] == "pending")
        late = [mm for mm, fate in fates.items() if fate == "pending"]
        passes, finals, retry_laters = asyncio.run(_resolve(fresh_url, late, kit_db))
    asyncio.run(kit_store.close())
    # After the resolver: nothing pending; each abandoned hold as its fate says.
    expected = {"confirmed": "confirmed", "pending": "confirmed"}
    for flow in abandoned:
        if flow.mm_transaction_id in fates:
            flow.final = expected.get(fates[flow.mm_transaction_id], "rolled_back")
    settled = [f for f in abandoned if f.final is not None]
    unsent = [f for f in abandoned if f.final is None and f.mm_transaction_id in rows]
    # Withdrawals that never reached the database: the server was down through all of the
    # caller's retries (the long run kills it 30 times while these are sent). They hold nothing
    # and no one finalizes them, but none of them may have been acknowledged.
    never_stored = [f for f in abandoned if f.mm_transaction_id not in rows]
    after = check_history(fresh_url, world, flows + settled, all_final=True)
    for flow in unsent:  # refused begins (121): a row with an error, never a hold
        after.check(rows[flow.mm_transaction_id]["state"] != "pending", flow.mm_transaction_id)
    for flow in never_stored:
        after.check(
            not flow.acks and flow.begin_error is not None,
            f"{flow.mm_transaction_id}: acknowledged but not in the database",
        )
    after.check(after.holds_pending == 0, f"{after.holds_pending} holds still pending")
    after.check(pending_before == len(fates), f"pending {pending_before}, abandoned {len(fates)}")
    problems = before.problems + after.problems
    by_fate = {fate: sum(1 for v in fates.values() if v == fate) for fate in FATES}
    record_result(
        "liveness: kill -9 + partner never finalizes, hold resolver",
        backend,
        operations=stats.attempts + abandon_stats.attempts,
        faults=kills + len(fates),
        failures=len(problems),
        invariant_checks=before.checks + after.checks,
        holdsOpened=after.holds,
        holdsFinalizedByCallers=after.holds - len(fates),
        holdsFinalizedByResolver=finals,
        holdsLeftPending=after.holds_pending,
        resolverPasses=passes,
        resolverRetryLater=retry_laters,
        fates=by_fate,
        seconds=round(time.monotonic() - started, 1),
    )
    assert kills >= KILLS
    assert len(fates) > 0 and by_fate["pending"] >= 0
    assert finals == len(fates), (finals, len(fates))
    assert not problems, "\n".join(problems)
