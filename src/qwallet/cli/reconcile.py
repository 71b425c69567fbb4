"""``qwallet reconcile``: prove the balances against the ledger (audited as ``reconcile.run``).

Without options only the entries after the newest checkpoint are read; ``--full`` proves all of
history in bounded batches and shows a progress bar on stderr (docs/operations.md). A run is a
reconciliation job like the console's (``service.reconcile_jobs``): refused while another runs.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.service import reconcile, reconcile_jobs
from qwallet.settings import Settings
from qwallet.store.factory import Store

FullOption = Annotated[
    bool,
    typer.Option(
        "--full",
        help="Prove everything from the first entry (in batches, with progress), not only"
        " the entries since the last checkpoint.",
    ),
]


class ProgressBar:
    """A bar on stderr: redrawn in place on a terminal, a line per tenth otherwise."""

    WIDTH = 30

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        filled = int(fraction * self.WIDTH)
        line = (
            f"reconcile --full [{'#' * filled}{'.' * (self.WIDTH - filled)}]"
            f" {fraction:6.1%} {done}/{total} batches {time.monotonic() - self.started:6.1f} s"
        )
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if done >= total else ""))
        elif int(fraction * 10) != self.last_tenth:
            self.last_tenth = int(fraction * 10)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def reconcile_command(full: FullOption = False, as_json: JsonOption = False) -> None:
    """Prove the balances against the ledger; exits 1 on any difference, 2 (changing nothing)
    while another reconciliation runs (the console's or another command's)."""

    async def run(store: Store) -> reconcile.ReconciliationReport:
        # A job like the console's, in the foreground: one run at a time (the lease).
        job = await reconcile_jobs.start(
            store,
            operator=actor(),
            mode="full" if full else "since",
            now_ms=now_ms(),
            audited=False,
        )
        return await reconcile_jobs.execute(
            store, job, now_ms, progress=ProgressBar() if full else None
        )

    report = with_store(Settings.from_env(), run)
    payload = report.as_json()
    if report.full:
        scope = "everything"
    elif report.position > report.since_position:
        scope = (
            f"entries {report.since_position + 1}..{report.position} (since the last checkpoint)"
        )
    else:
        scope = f"nothing new since the checkpoint at entry {report.position}"
    human = (
        f"{'OK' if report.ok else 'DIFFERENCES FOUND'} ({scope}): {report.players} players,"
        f" {report.transactions} transactions, {report.entries} ledger entries"
        + (f"; checkpoint at entry {report.position}" if report.checkpoint else "")
    )
    if not report.ok:
        human += "\n" + json.dumps(payload, indent=2)
    emit(as_json, payload, human)
    if not report.ok:
        raise typer.Exit(1)
