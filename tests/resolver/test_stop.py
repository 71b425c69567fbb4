"""Stopping the hold resolver (a server shutting down): the pass in progress finishes the hold it
is asking about and leaves the others for the next pass."""

from __future__ import annotations

import asyncio

import httpx

from qwallet.resolver import HoldResolver, Outcome
from qwallet.settings import Settings
from tests.conftest import Platform

from .conftest import Holds, past_window


class StopAfterFirstAnswer(httpx.AsyncBaseTransport):
    """The real HTTP transport to the kit's endpoint; the stop arrives while the first answer
    is being read, as SIGTERM would in the middle of a pass."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.requests = 0
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        response = await self._inner.handle_async_request(request)
        self.stop.set()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_a_stopped_pass_finishes_the_current_hold_and_leaves_the_rest(
    platform: Platform, settings: Settings, holds_: Holds
) -> None:
    made = [holds_.make("confirmed") for _ in range(3)]
    past_window(platform, settings)

    async def one_pass() -> tuple[list[Outcome], int]:
        stop = asyncio.Event()
        transport = StopAfterFirstAnswer(stop)
        async with HoldResolver(
            platform.store, settings, platform.clock, transport=transport
        ) as resolver:
            outcomes = await resolver.run_once(stop)
        return outcomes, transport.requests

    outcomes, requests = platform.run(one_pass())
    assert requests == 1 and len(outcomes) == 1, outcomes
    assert outcomes[0].resolution.action in ("confirmed", "rolled_back", "retry_later")
    # The holds not reached are untouched: still pending, never asked, due on the next pass.
    untouched = [h for h in made if h.qw_id != outcomes[0].qw_transaction_id]
    assert len(untouched) >= 2
    for hold in untouched:
        assert holds_.state(hold.qw_id) == "pending" and holds_.resolutions(hold.qw_id) == []

    # Without a stop, the next pass resolves them.
    async def next_pass() -> list[Outcome]:
        async with HoldResolver(platform.store, settings, platform.clock) as resolver:
            return await resolver.run_once()

    resolved = {o.qw_transaction_id for o in platform.run(next_pass())}
    assert {h.qw_id for h in untouched} <= resolved
