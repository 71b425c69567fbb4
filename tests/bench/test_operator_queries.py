"""The bench's operator-query timings measure the query, not the bench's own setup.

The payment worker row runs one tick of ``PaymentWorker``; the worker builds its HTTP client
once, at start (about 100 ms on the bench machine, its TLS context), so the row must not build
one per call: the row was that construction, not the scan, before the bench kept one client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwallet.bench import operator_queries
from qwallet.domain.ids import NIL_ID
from qwallet.settings import Settings
from qwallet.store.factory import open_store
from tests.conftest import BACKENDS, fresh_database_url

WORKER_ROW = "payment worker scan"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    yield from fresh_database_url(str(request.param), tmp_path)


def test_payment_worker_row_builds_one_http_client_for_all_its_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[httpx.AsyncClient] = []

    class CountingClient(httpx.AsyncClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(operator_queries.httpx, "AsyncClient", CountingClient)
    settings = Settings(database_url=database_url, pg_pool_min=1, pg_pool_max=2)

    async def run() -> list[operator_queries.Timing]:
        store = await open_store(settings)
        try:
            named = [c for c in operator_queries.calls(settings) if c[0] == WORKER_ROW]
            assert len(named) == 1
            return await operator_queries.time_calls(store, named, 5, explain=True)
        finally:
            await store.close()

    timing = asyncio.run(run())[0]
    assert timing.error is None, timing.error
    assert len(timing.runs_ms) == 5
    # Five timed ticks and the recorded one for the plans: one client, as the worker has.
    assert len(built) == 1
    assert timing.plans, "the plans of the worker's statements were not recorded"


def test_deep_page_row_fetches_that_page_only(database_url: str) -> None:
    # The walk to page 200 (199 pages) is made before the timings; a timed run of the row must
    # run the statements of one page, as page 1 does, not the walk (which at 20 million stored
    # transactions took 9.5 s and was reported as the cost of page 200).
    settings = Settings(database_url=database_url, pg_pool_min=1, pg_pool_max=2)
    first, deep = "admin transaction list, page 1", "admin transaction list, page 200"

    async def statements() -> dict[str, list[str]]:
        store = await open_store(settings)
        try:
            ran: dict[str, list[str]] = {}
            # A cursor's key is a transaction id: a UUID (a uuid column on PostgreSQL).
            for name, call in operator_queries.calls(
                settings, operator_queries.Samples(deep_cursor=f"1_{NIL_ID}")
            ):
                if name in (first, deep):
                    recorder = operator_queries.RecordingDatabase(store)
                    await call(recorder)
                    ran[name] = [sql for sql, _ in recorder.statements]
            return ran
        finally:
            await store.close()

    ran = asyncio.run(statements())
    assert len(ran[deep]) == len(ran[first]) >= 1, ran
