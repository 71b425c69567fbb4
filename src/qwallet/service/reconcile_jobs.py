"""Reconciliation as a background job (the admin console): one at a time, across processes.

A full run on a large ledger takes minutes, longer than any HTTP request should. The console's
*Run* button therefore only *starts* a job (``start``), which then runs in the server process
(``run``) while the page shows its progress and, at the end, its result, from the
``reconcile_jobs`` table: any server process behind the load balancer can show it.

**One at a time.** ``start`` takes the lease of ``reconcile_lease`` (one row) with a conditional
``UPDATE`` in the same transaction that inserts the job and writes its ``reconcile.start`` audit
entry: it succeeds only when no job holds the lease or the holder's lease has run out
(``LEASE_MS`` without a heartbeat: its process died). The database decides, so two operators,
two server processes or two machines pressing the button at once get one job and one
``ReconcileBusy``. The running job renews its lease with its progress every
``HEARTBEAT_S``; a job whose lease ran out is shown as ``abandoned`` and is marked so when the
next job takes the lease over. The run itself is ``reconcile.run_reconcile`` (its
``reconcile.run`` audit entry and ``reconcile_runs`` row included). ``qwallet reconcile`` runs
as a job too (``execute``, in the foreground): the console shows it, and it is refused while
another run holds the lease, so no two runs that write checkpoints ever overlap — a wallet one
of them moved is always checked by the run that writes the next checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from qwallet.service import audit, reconcile
from qwallet.service.partners import OperatorError
from qwallet.store.sql import SqlDatabase

logger = logging.getLogger(__name__)

LEASE_MS = 60_000
HEARTBEAT_S = 1.0
MODES = ("since", "full")
LEASE_ROW = 1


class ReconcileBusy(OperatorError):
    """Another reconciliation job holds the lease; nothing was started."""


@dataclass(frozen=True)
class Job:
    id: int
    mode: str
    operator: str
    state: str  # running, ok, differences, failed, abandoned
    started_at_ms: int
    heartbeat_at_ms: int
    finished_at_ms: int | None
    done: int
    total: int
    report: dict[str, Any] | None
    error: str | None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def describe(self) -> str:
        return f"job {self.id} ({self.mode}, started by {self.operator})"


_COLUMNS = (
    "id, mode, operator, state, started_at_ms, heartbeat_at_ms, finished_at_ms, done_units,"
    " total_units, report, error"
)


async def start(
    db: SqlDatabase, *, operator: str, mode: str, now_ms: int, audited: bool = True
) -> Job:
    """Start a job (``mode`` ``since`` or ``full``) if none is running; audited as
    ``reconcile.start`` (not for ``qwallet reconcile``, which starts and runs in one command:
    its ``reconcile.run`` entry is its record). Raises ``ReconcileBusy`` (nothing written)
    while another one runs."""
    if mode not in MODES:
        raise OperatorError(f"mode must be one of {', '.join(MODES)}")
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO reconcile_lease (id, job_id, until_ms) VALUES ($1, NULL, 0)"
            " ON CONFLICT (id) DO NOTHING",
            LEASE_ROW,
        )
        holder = await tx.fetchrow(
            "SELECT job_id, until_ms FROM reconcile_lease WHERE id = $1", LEASE_ROW
        )
        assert holder is not None
        row = await tx.fetchrow(
            "INSERT INTO reconcile_jobs (mode, operator, state, started_at_ms, heartbeat_at_ms,"
            " done_units, total_units) VALUES ($1, $2, 'running', $3, $3, 0, 0) RETURNING id",
            mode,
            operator,
            now_ms,
        )
        assert row is not None
        job_id = int(row["id"])
        # The decision: only a free or run-out lease is taken (serialized by the row's lock).
        taken = await tx.execute(
            "UPDATE reconcile_lease SET job_id = $1, until_ms = $2"
            " WHERE id = $3 AND (job_id IS NULL OR until_ms < $4)",
            job_id,
            now_ms + LEASE_MS,
            LEASE_ROW,
            now_ms,
        )
        if taken != 1:
            running = await _job(tx, int(holder["job_id"])) if holder["job_id"] else None
            what = running.describe() if running else "another job"
            raise ReconcileBusy(f"A reconciliation is already running ({what}); try again later.")
        if holder["job_id"] is not None:
            await tx.execute(
                "UPDATE reconcile_jobs SET state = 'abandoned', finished_at_ms = $1"
                " WHERE id = $2 AND state = 'running'",
                now_ms,
                holder["job_id"],
            )
        if audited:
            await audit.record(tx, operator, "reconcile.start", None, {"mode": mode}, now_ms)
        job = await _job(tx, job_id)
    assert job is not None
    return job


async def run(db: SqlDatabase, job: Job, now_ms: Callable[[], int]) -> Job:
    """Run a started job to its end (the console's background task); a failure is recorded in
    the job and logged, not raised."""
    try:
        await execute(db, job, now_ms)
    except Exception:
        logger.exception("reconciliation job %s failed", job.id)
    finished = await current(db, now_ms())
    assert finished is not None
    return finished


async def execute(
    db: SqlDatabase,
    job: Job,
    now_ms: Callable[[], int],
    progress: reconcile.Progress | None = None,
) -> reconcile.ReconciliationReport:
    """Run a started job, renewing its lease, and record its result; a failure is recorded and
    raised (``qwallet reconcile`` exits with it). ``progress`` also gets every update."""
    state: list[int] = [0, 0]
    stop = asyncio.Event()

    def record(done: int, total: int) -> None:
        state[:] = [done, total]
        if progress is not None:
            progress(done, total)

    async def heartbeat() -> None:
        while not stop.is_set():
            try:
                await _beat(db, job.id, state[0], state[1], now_ms())
            except Exception:
                logger.exception("reconciliation job %s: heartbeat failed", job.id)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_S)

    beating = asyncio.create_task(heartbeat(), name=f"qwallet-reconcile-job-{job.id}")
    outcome, report, error = "failed", None, None
    try:
        result = await reconcile.run_reconcile(
            db,
            operator=job.operator,
            now_ms=now_ms(),
            full=job.mode == "full",
            progress=record,
        )
        outcome = "ok" if result.ok else "differences"
        report = json.dumps(result.as_json())
        return result
    except asyncio.CancelledError:
        error = "the server stopped during the run; start it again"
        raise
    except Exception as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
        raise
    finally:
        stop.set()
        await beating
        await asyncio.shield(_finish(db, job.id, outcome, report, error, state, now_ms()))


async def _beat(db: SqlDatabase, job_id: int, done: int, total: int, now_ms: int) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE reconcile_jobs SET heartbeat_at_ms = $1, done_units = $2, total_units = $3"
            " WHERE id = $4 AND state = 'running'",
            now_ms,
            done,
            total,
            job_id,
        )
        await tx.execute(
            "UPDATE reconcile_lease SET until_ms = $1 WHERE id = $2 AND job_id = $3",
            now_ms + LEASE_MS,
            LEASE_ROW,
            job_id,
        )


async def _finish(
    db: SqlDatabase,
    job_id: int,
    state: str,
    report: str | None,
    error: str | None,
    progress: list[int],
    now_ms: int,
) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE reconcile_jobs SET state = $1, report = $2, error = $3, finished_at_ms = $4,"
            " heartbeat_at_ms = $4, done_units = $5, total_units = $6"
            " WHERE id = $7 AND state = 'running'",
            state,
            report,
            error,
            now_ms,
            progress[0],
            progress[1],
            job_id,
        )
        await tx.execute(
            "UPDATE reconcile_lease SET job_id = NULL, until_ms = 0 WHERE id = $1 AND job_id = $2",
            LEASE_ROW,
            job_id,
        )


async def current(db: SqlDatabase, now_ms: int) -> Job | None:
    """The newest job; a running one whose lease ran out is shown as ``abandoned``."""
    async with db.transaction() as tx:
        row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM reconcile_jobs ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    job = _from_row(row)
    if job.running and job.heartbeat_at_ms + LEASE_MS < now_ms:
        return replace(job, state="abandoned")
    return job


async def _job(tx: Any, job_id: int) -> Job | None:
    row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM reconcile_jobs WHERE id = $1", job_id)
    return None if row is None else _from_row(row)


def _from_row(row: Any) -> Job:
    return Job(
        id=int(row["id"]),
        mode=str(row["mode"]),
        operator=str(row["operator"]),
        state=str(row["state"]),
        started_at_ms=int(row["started_at_ms"]),
        heartbeat_at_ms=int(row["heartbeat_at_ms"]),
        finished_at_ms=None if row["finished_at_ms"] is None else int(row["finished_at_ms"]),
        done=int(row["done_units"]),
        total=int(row["total_units"]),
        report=None if row["report"] is None else json.loads(str(row["report"])),
        error=None if row["error"] is None else str(row["error"]),
    )
