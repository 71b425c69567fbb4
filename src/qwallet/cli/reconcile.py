"""``qwallet reconcile``: prove the balances against the ledger (audited as ``reconcile.run``)."""

from __future__ import annotations

import json

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.service import reconcile
from qwallet.settings import Settings


def reconcile_command(as_json: JsonOption = False) -> None:
    """Prove every balance against the ledger; exits 1 on any difference."""
    report = with_store(
        Settings.from_env(),
        lambda store: reconcile.run_reconcile(store, operator=actor(), now_ms=now_ms()),
    )
    payload = report.as_json()
    human = (
        f"{'OK' if report.ok else 'DIFFERENCES FOUND'}: {report.players} players, "
        f"{report.transactions} transactions, {report.entries} ledger entries"
    )
    if not report.ok:
        human += "\n" + json.dumps(payload, indent=2)
    emit(as_json, payload, human)
    if not report.ok:
        raise typer.Exit(1)
