"""The console's reconciliation runs as a background job, one at a time across processes.

Over the real server on loopback, on both databases: the POST only starts the job (303), the
page follows its progress and shows its result; a start while a job holds the lease — here
taken by "another process", the service called directly on the same database — is refused with
409 and writes nothing; a job whose lease ran out (its process died) is shown as abandoned and
taken over by the next start. Starting is audited (``reconcile.start``), as the run is
(``reconcile.run``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from qwallet.service import audit, reconcile, reconcile_jobs
from tests.admin.conftest import Console
from tests.conftest import Platform
from tests.integration.test_cli_and_operator_api import qwallet


def audit_actions(platform: Platform, operator: str) -> list[str]:
    rows = platform.run(audit.entries(platform.store, operator=operator, limit=500))
    return [str(row["action"]) for row in rows]


def wait_finished(console: Console, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        page = console.get("/admin/reconcile").text
        if "finished" in page or "failed:" in page:
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.1)


def latest(platform: Platform) -> reconcile_jobs.Job:
    job = platform.run(reconcile_jobs.current(platform.store, platform.clock.now_ms()))
    assert job is not None
    return job


@pytest.fixture
def idle(platform: Platform) -> None:
    """No job holds the lease when a test starts (a previous test's job has finished)."""
    deadline = time.monotonic() + 30
    while (job := platform.run(reconcile_jobs.current(platform.store, 0))) and job.running:
        assert time.monotonic() < deadline, "a job of an earlier test is still running"
        time.sleep(0.1)


def test_a_run_is_a_background_job_with_its_result_on_the_page(
    console: Console, platform: Platform, new_wallet: Any, idle: None
) -> None:
    wallet = new_wallet()
    wallet.money("withdraw", "job-1", "2.00")
    before = audit_actions(platform, console.username)
    started = console.post("/admin/reconcile", {"mode": "full"})
    assert started.status_code == 303 and started.headers["location"] == "/admin/reconcile"
    page = wait_finished(console)
    assert "OK — no differences" in page and "Full run" in page
    assert 'http-equiv="refresh"' not in page  # the page stops refreshing at the end
    job = latest(platform)
    assert job.state == "ok" and job.mode == "full" and job.operator == console.username
    assert job.report is not None and job.report["ok"] and job.report["checkpoint"]
    assert job.done == job.total > 0
    after = audit_actions(platform, console.username)
    assert after[: len(after) - len(before)] == ["reconcile.run", "reconcile.start"]

    # The next (incremental) run, the default button.
    wallet.money("withdraw", "job-2", "1.00")
    assert console.post("/admin/reconcile", {"mode": "since"}).status_code == 303
    page = wait_finished(console)
    assert "OK — no differences" in page and "Entries " in page
    assert latest(platform).report["full"] is False  # type: ignore[index]


def test_a_second_start_while_one_runs_is_refused_until_its_lease_runs_out(
    console: Console, platform: Platform, idle: None
) -> None:
    # Another server process started a job and is working on it (its heartbeat is the lease).
    other = platform.run(
        reconcile_jobs.start(
            platform.store, operator="elsewhere", mode="full", now_ms=platform.clock.now_ms()
        )
    )
    platform.run(reconcile_jobs._beat(platform.store, other.id, 3, 10, platform.clock.now_ms()))
    page = console.get("/admin/reconcile").text
    assert 'http-equiv="refresh"' in page and "3 of 10 batches" in page
    assert 'max="10" value="3"' in page and "disabled" in page
    before = audit_actions(platform, console.username)
    jobs_before = latest(platform).id

    refused = console.post("/admin/reconcile", {"mode": "since"})
    assert refused.status_code == 409
    assert f"already running (job {other.id} (full, started by elsewhere))" in refused.text
    assert latest(platform).id == jobs_before  # nothing started, nothing audited
    assert audit_actions(platform, console.username) == before

    # The other process died: once its lease has run out the job shows as abandoned, and the
    # next start takes the lease over.
    platform.clock.advance(reconcile_jobs.LEASE_MS + 1)
    assert "abandoned" in console.get("/admin/reconcile").text
    assert console.post("/admin/reconcile", {"mode": "since"}).status_code == 303
    assert "OK — no differences" in wait_finished(console)
    states = platform.run(_states(platform))
    assert states[other.id] == "abandoned"


def test_concurrent_starts_get_one_job(platform: Platform, idle: None) -> None:
    async def race() -> list[object]:
        return await asyncio.gather(
            *(
                reconcile_jobs.start(
                    platform.store, operator=f"op-{i}", mode="since", now_ms=platform.clock.now_ms()
                )
                for i in range(6)
            ),
            return_exceptions=True,
        )

    results = platform.run(race())
    started = [r for r in results if isinstance(r, reconcile_jobs.Job)]
    refused = [r for r in results if isinstance(r, reconcile_jobs.ReconcileBusy)]
    assert len(started) == 1 and len(refused) == 5, results
    finished = platform.run(reconcile_jobs.run(platform.store, started[0], platform.clock.now_ms))
    assert finished.state == "ok"
    # The lease is free again.
    again = platform.run(
        reconcile_jobs.start(
            platform.store, operator="op-x", mode="since", now_ms=platform.clock.now_ms()
        )
    )
    platform.run(reconcile_jobs.run(platform.store, again, platform.clock.now_ms))


def test_bad_mode_is_refused_and_a_failing_run_is_shown(
    console: Console, platform: Platform, idle: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = latest(platform).id if platform.run(_states(platform)) else 0
    refused = console.post("/admin/reconcile", {"mode": "everything"})
    assert refused.status_code == 400 and "mode must be one of since, full" in refused.text
    assert (latest(platform).id if platform.run(_states(platform)) else 0) == before

    async def broken(*_args: object, **_kwargs: object) -> reconcile.ReconciliationReport:
        raise RuntimeError("the database went away")

    # The server runs in this process: its job calls the patched run.
    monkeypatch.setattr(reconcile, "run_reconcile", broken)
    assert console.post("/admin/reconcile").status_code == 303
    page = wait_finished(console)
    assert "failed: RuntimeError: the database went away" in page
    assert latest(platform).state == "failed"


async def _states(platform: Platform) -> dict[int, str]:
    async with platform.store.transaction() as tx:
        rows = await tx.fetch("SELECT id, state FROM reconcile_jobs")
    return {int(r["id"]): str(r["state"]) for r in rows}


def test_the_command_line_run_is_a_job_too_and_refused_while_one_runs(
    platform: Platform, database_url: str, idle: None
) -> None:
    # The command reads the system clock: the other job's lease is taken on it too.
    now_ms = time.time_ns() // 1_000_000
    other = platform.run(
        reconcile_jobs.start(platform.store, operator="elsewhere", mode="since", now_ms=now_ms)
    )
    refused = qwallet(database_url, "reconcile", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"already running (job {other.id}" in refused.stdout + refused.stderr
    assert latest(platform).id == other.id
    platform.run(reconcile_jobs.run(platform.store, other, lambda: now_ms))
    done = qwallet(database_url, "reconcile", "--json")
    assert json.loads(done.stdout)["ok"] is True
    cli_job = latest(platform)
    assert cli_job.id > other.id and cli_job.state == "ok"
    assert cli_job.operator.startswith("cli")
