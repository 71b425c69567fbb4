"""The hold resolver against the partner kit's real Query Withdrawal endpoint (spec §3)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from qwallet.domain.transactions import Kind
from qwallet.resolver import HoldResolver, backoff_s
from qwallet.service import holds
from qwallet.settings import Settings
from tests.conftest import Platform, free_port
from tests.partner.conftest import serve

from .conftest import HOUR_MS, QUERY_AUTH, Holds, outcome_for, past_window, run_resolver


def resolutions_total(action: str) -> float:
    value = REGISTRY.get_sample_value("qwallet_hold_resolutions_total", {"action": action})
    return value or 0.0


@pytest.mark.parametrize(
    ("kit_state", "partner_status", "action", "state", "available"),
    [
        ("confirmed", "CONFIRMED", "confirmed", "confirmed", "90.00"),
        ("rolled_back", "ROLLED_BACK", "rolled_back", "rolled_back", "100.00"),
        (None, "UNKNOWN", "rolled_back", "rolled_back", "100.00"),
    ],
)
def test_final_answers_are_applied(
    platform: Platform,
    settings: Settings,
    holds_: Holds,
    kit_state: str | None,
    partner_status: str,
    action: str,
    state: str,
    available: str,
) -> None:
    hold = holds_.make(kit_state)
    before = resolutions_total(action)
    past_window(platform, settings)

    outcome = outcome_for(run_resolver(platform, settings), hold.qw_id)

    assert outcome is not None
    assert outcome.resolution.action == action
    assert outcome.resolution.partner_status == partner_status
    assert holds_.state(hold.qw_id) == state
    phase = "confirm" if state == "confirmed" else "rollback"
    target = "partner" if state == "confirmed" else "available"
    assert holds_.entries(hold.qw_id) == [
        ("begin", "available", -1000),
        ("begin", "held", 1000),
        (phase, "held", -1000),
        (phase, target, 1000),
    ]
    player = platform.player(hold.wallet.player_id)
    assert (player["available"], player["held"]) == (available, "0.00")
    (resolution,) = holds_.resolutions(hold.qw_id)
    assert resolution["actor"] == "resolver"
    assert resolution["partner_status"] == partner_status
    assert resolution["action"] == action
    assert resolutions_total(action) == before + 1
    assert platform.reconcile().ok
    # The partner's late retry now gets the contract's answer for a final transaction.
    status, body = hold.wallet.money("confirmWithdrawal", hold.mm_id, "10.00")
    if state == "confirmed":
        assert status == 200 and body["balance"]["amount"] == 90.0
    else:
        assert body["errorCode"] == 132
    # Resolved holds are not asked about again.
    platform.clock.advance(settings.hold_retry_max_s * 1000)
    assert outcome_for(run_resolver(platform, settings), hold.qw_id) is None


def test_pending_answer_asks_again_later_with_backoff(
    platform: Platform, settings: Settings, holds_: Holds
) -> None:
    hold = holds_.make("pending")
    past_window(platform, settings)

    first = outcome_for(run_resolver(platform, settings), hold.qw_id)
    assert first is not None and first.resolution.action == "retry_later"
    assert first.resolution.partner_status == "PENDING"
    assert holds_.state(hold.qw_id) == "pending"
    assert len(holds_.entries(hold.qw_id)) == 2
    # Not due again before the backoff …
    assert outcome_for(run_resolver(platform, settings), hold.qw_id) is None
    platform.clock.advance(settings.hold_retry_s * 1000 - 2000)
    assert outcome_for(run_resolver(platform, settings), hold.qw_id) is None
    # … then asked again; the next wait is twice as long.
    platform.clock.advance(2000)
    second = outcome_for(run_resolver(platform, settings), hold.qw_id)
    assert second is not None and second.resolution.action == "retry_later"
    platform.clock.advance(settings.hold_retry_s * 1000)
    assert outcome_for(run_resolver(platform, settings), hold.qw_id) is None
    platform.clock.advance(settings.hold_retry_s * 1000)
    assert outcome_for(run_resolver(platform, settings), hold.qw_id) is not None
    assert [r["action"] for r in holds_.resolutions(hold.qw_id)] == ["retry_later"] * 3
    assert platform.reconcile().ok
    # Once the studio decides, the next question resolves the hold.
    asyncio.run(_decide(holds_, hold.mm_id, "confirm"))
    platform.clock.advance(settings.hold_retry_max_s * 1000)
    final = outcome_for(run_resolver(platform, settings), hold.qw_id)
    assert final is not None and final.resolution.action == "confirmed"
    assert platform.reconcile().ok


async def _decide(holds_: Holds, mm_id: str, operation: str) -> None:
    from qwallet.partner import SQLiteStore

    store = SQLiteStore(holds_.kit_db)
    try:
        await store.decide("withdrawal", mm_id, operation, None, 4.0)  # type: ignore[arg-type]
    finally:
        await store.close()


def test_window_is_respected(platform: Platform, settings: Settings, holds_: Holds) -> None:
    hold = holds_.make("confirmed")
    platform.clock.advance(settings.hold_window_s * 1000 - HOUR_MS)
    assert outcome_for(run_resolver(platform, settings), hold.qw_id) is None
    assert holds_.resolutions(hold.qw_id) == []
    platform.clock.advance(HOUR_MS - 1)
    assert outcome_for(run_resolver(platform, settings), hold.qw_id) is None
    platform.clock.advance(1)
    outcome = outcome_for(run_resolver(platform, settings), hold.qw_id)
    assert outcome is not None and outcome.resolution.action == "confirmed"


def _garbage_app(kind: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            from qwallet.partner._http import lifespan

            await lifespan(receive, send)
            return
        request = Request(scope, receive)
        await request.body()
        response: Response
        if kind == "slow":
            await asyncio.sleep(3)
            response = PlainTextResponse("late")
        elif kind == "not-json":
            response = PlainTextResponse("<html>oops</html>")
        elif kind == "http-500":
            response = PlainTextResponse("internal error", status_code=500)
        elif kind == "bad-status":
            response = Response(
                b'{"mmTransactionId": "x", "status": "MAYBE"}', media_type="application/json"
            )
        else:
            raise AssertionError(kind)
        await response(scope, receive, send)

    return app


@pytest.mark.parametrize("failure", ["down", "slow", "not-json", "http-500", "bad-status", "401"])
def test_no_usable_answer_asks_again_later(
    platform: Platform, settings: Settings, holds_: Holds, failure: str
) -> None:
    before = resolutions_total("retry_later")
    if failure in ("down", "401"):
        url = f"http://127.0.0.1:{free_port()}/query" if failure == "down" else None
        auth = ("qwallet", "wrong-password") if failure == "401" else ("qwallet", "x")
        hold = holds_.make("confirmed", query_url=url, auth=auth)
        past_window(platform, settings)
        outcome = outcome_for(run_resolver(platform, settings), hold.qw_id)
    else:
        with serve(_garbage_app(failure)) as base:
            hold = holds_.make("confirmed", query_url=base + "/query")
            past_window(platform, settings)
            outcome = outcome_for(run_resolver(platform, settings), hold.qw_id)
    assert outcome is not None
    assert outcome.resolution.action == "retry_later"
    assert outcome.resolution.partner_status is None
    detail = outcome.resolution.detail or ""
    expected = {
        "down": "no answer",
        "slow": "timeout",
        "not-json": "invalid answer",
        "http-500": "HTTP 500",
        "bad-status": "answer names mmTransactionId",
        "401": "HTTP 401",
    }[failure]
    assert expected in detail, detail
    assert holds_.state(hold.qw_id) == "pending"
    assert len(holds_.entries(hold.qw_id)) == 2
    assert resolutions_total("retry_later") >= before + 1
    assert platform.reconcile().ok
    # The hold is released by a later pass once the partner answers properly.
    holds_.configure(hold.wallet.username, holds_.query_url, QUERY_AUTH)
    platform.clock.advance(settings.hold_retry_s * 1000)
    final = outcome_for(run_resolver(platform, settings), hold.qw_id)
    assert final is not None and final.resolution.action == "confirmed"
    assert platform.reconcile().ok


def test_partner_without_query_url_is_retried(
    platform: Platform, settings: Settings, holds_: Holds
) -> None:
    hold = holds_.make("confirmed")
    holds_.configure(hold.wallet.username, None, ("qwallet", "x"))
    past_window(platform, settings)
    outcome = outcome_for(run_resolver(platform, settings), hold.qw_id)
    assert outcome is not None and outcome.resolution.action == "retry_later"
    assert "no query URL" in (outcome.resolution.detail or "")


class ConfirmFirst(httpx.AsyncBaseTransport):
    """Lets the partner's own late confirm through just before the platform's question."""

    def __init__(self, confirm: Any) -> None:
        self._confirm = confirm
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.to_thread(self._confirm)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_hold_confirmed_concurrently_by_the_partner_is_already_final(
    platform: Platform, settings: Settings, holds_: Holds
) -> None:
    hold = holds_.make("confirmed")
    past_window(platform, settings)
    answers: list[tuple[int, dict[str, Any]]] = []

    def partner_retry() -> None:
        answers.append(hold.wallet.money("confirmWithdrawal", hold.mm_id, "10.00"))

    outcome = outcome_for(
        run_resolver(platform, settings, transport=ConfirmFirst(partner_retry)), hold.qw_id
    )
    assert answers and answers[0][0] == 200 and "qwTransactionId" in answers[0][1]
    assert outcome is not None
    assert outcome.resolution.action == "already_final"
    assert outcome.resolution.partner_status == "CONFIRMED"
    assert holds_.state(hold.qw_id) == "confirmed"
    assert len(holds_.entries(hold.qw_id)) == 4  # confirmed once, not twice
    assert platform.player(hold.wallet.player_id)["available"] == "90.00"
    (resolution,) = holds_.resolutions(hold.qw_id)
    assert resolution["action"] == "already_final"
    assert "already confirmed" in resolution["detail"]
    assert platform.reconcile().ok


def test_two_resolvers_at_once_move_money_once(
    platform: Platform, settings: Settings, holds_: Holds
) -> None:
    made = [holds_.make("rolled_back") for _ in range(3)]
    past_window(platform, settings)

    async def both() -> list[Any]:
        async with (
            HoldResolver(platform.store, settings, platform.clock) as one,
            HoldResolver(platform.store, settings, platform.clock) as two,
        ):
            first, second = await asyncio.gather(one.run_once(), two.run_once())
        return [*first, *second]

    outcomes = platform.run(both())
    for hold in made:
        actions = sorted(o.resolution.action for o in outcomes if o.qw_transaction_id == hold.qw_id)
        assert actions in (["rolled_back"], ["already_final", "rolled_back"]), actions
        assert len(holds_.entries(hold.qw_id)) == 4
        assert platform.player(hold.wallet.player_id)["available"] == "100.00"
    assert platform.reconcile().ok


def test_resolve_applies_exactly_the_ledger_movement_for_deposits(
    platform: Platform, settings: Settings, holds_: Holds
) -> None:
    """Operators resolve overdue deposits by hand; the resolver leaves them alone."""
    wallet = holds_.new_wallet(balance="5.00")
    status, body = wallet.money("deposit", "d-overdue", "7.50")
    assert status == 200
    qw_id = body["qwTransactionId"]
    past_window(platform, settings)
    assert outcome_for(run_resolver(platform, settings), qw_id) is None
    cutoff = platform.clock.now_ms() - settings.hold_window_s * 1000
    overdue = platform.run(holds.overdue(platform.store, Kind.DEPOSIT, cutoff, 1000))
    assert qw_id in {row["qw_transaction_id"] for row in overdue}

    resolution = platform.run(
        holds.resolve(
            platform.store,
            qw_id,
            "confirm",
            actor="alice",
            partner_status=None,
            detail="studio confirmed by e-mail",
            now_ms=platform.clock.now_ms(),
        )
    )
    assert resolution.action == "confirmed"
    assert holds_.entries(qw_id)[2:] == [
        ("confirm", "pending_in", -750),
        ("confirm", "available", 750),
    ]
    assert platform.player(wallet.player_id)["available"] == "12.50"
    again = platform.run(
        holds.resolve(
            platform.store,
            qw_id,
            "rollback",
            actor="bob",
            partner_status=None,
            detail="too late",
            now_ms=platform.clock.now_ms(),
        )
    )
    assert again.action == "already_final" and again.state == "confirmed"
    assert [r["actor"] for r in holds_.resolutions(qw_id)] == ["alice", "bob"]
    assert platform.reconcile().ok


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff_s(n, 300, 3600) for n in range(6)] == [0, 300, 600, 1200, 2400, 3600]
    assert backoff_s(10_000, 300, 3600) == 3600
