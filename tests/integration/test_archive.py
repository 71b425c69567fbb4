"""``qwallet db archive``: closed months leave the database, their ids keep answering.

On both backends, over the real server: transactions of a month two months back are
exported, checked and removed; then every replay and changed-data call for them gets the
contract's answer (spec 1.4) from ``transaction_keys``, and reconciliation stays clean.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from qwallet.clock import ManualClock
from qwallet.service import archive, partner_reports, reconcile
from qwallet.service.partners import OperatorError
from qwallet.settings import Settings
from qwallet.store.sql import fetch_all, fetch_one
from tests.conftest import LiveServer, Platform, Wallet
from tests.integration.test_cli_and_operator_api import as_json, qwallet

DAY_MS = 86_400_000
NOW_MS = time.time_ns() // 1_000_000
# The middle of the month two months back: whole months lie between it and now.
OLD_MS = archive.Month.of(archive.Month.of(NOW_MS).lower_ms - 40 * DAY_MS).lower_ms + 14 * DAY_MS


@pytest.fixture(scope="module")
def clock(backend: str) -> ManualClock:
    return ManualClock(start_ms=OLD_MS)


def count(platform: Platform, sql: str, *args: object) -> int:
    row = platform.run(fetch_one(platform.store, sql, *args))
    assert row is not None
    return int(row["n"])


def run_archive(platform: Platform, out: Path) -> archive.ArchiveReport:
    before = archive.Month.of(NOW_MS)
    return platform.run(
        archive.archive(platform.store, out, before, operator="test", now_ms=NOW_MS)
    )


def test_archive_and_replay_of_archived_ids(
    new_wallet: Any, server: LiveServer, platform: Platform, clock: ManualClock, tmp_path: Path
) -> None:
    wallet: Wallet = new_wallet("100.00")
    # Another player of the same partner.
    player = platform.create_player("100.00")
    other = Wallet(
        server,
        wallet.username,
        wallet.password,
        player,
        platform.create_session(player, wallet.username),
    )
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    answers["w"] = wallet.money("withdraw", "w-1", "10.00")
    answers["w-confirm"] = wallet.money("confirmWithdrawal", "w-1", "10.00")
    answers["r"] = wallet.money("withdraw", "r-1", "5.00")
    answers["r-rollback"] = wallet.money("rollbackWithdrawal", "r-1", rollbackReason="x")
    answers["d"] = wallet.money("deposit", "d-1", "7.00")
    answers["d-confirm"] = wallet.money("confirmDeposit", "d-1", "7.00")
    answers["blocked"] = wallet.money("rollbackWithdrawal", "late-1", rollbackReason="lost")
    answers["pending"] = wallet.money("withdraw", "p-1", "1.00")
    assert all(status == 200 for status, _ in answers.values()), answers

    clock.advance(NOW_MS - clock.now_ms())
    out = tmp_path / "archive"
    # A pending hold is never archived: the run refuses and changes nothing.
    with pytest.raises(OperatorError, match="pending"):
        run_archive(platform, out)
    assert not out.exists()
    assert wallet.money("rollbackWithdrawal", "p-1", rollbackReason="late")[0] == 200

    transactions_before = count(platform, "SELECT COUNT(*) AS n FROM transactions")
    # The settlement of the archived day, as the live rows give it (not stored yet).
    old_day = dt.datetime.fromtimestamp(OLD_MS / 1000, dt.UTC).date()
    ids = platform.run(partner_reports.partner_ids(platform.store, wallet.username))
    partner_id = ids[0][1]
    live = platform.run(partner_reports.settlement(platform.store, partner_id, old_day, old_day))
    assert [(t.withdrawals_confirmed_minor, t.withdrawals_rolled_back_minor) for t in live] == [
        (1_000, 500)
    ]
    report = run_archive(platform, out)
    assert [m.month for m in report.months] == [archive.Month.of(OLD_MS).label]
    archived = report.months[0]
    assert archived.transactions == transactions_before == 5
    assert count(platform, "SELECT COUNT(*) AS n FROM transactions") == 0
    # p-1's rollback was written this month: its two entries stay; beside them, one entry per
    # account carries what the archived month left on it.
    assert count(platform, "SELECT COUNT(*) AS n FROM ledger_entries WHERE phase <> 'carry'") == 2
    carried = platform.run(
        fetch_all(
            platform.store,
            "SELECT adjustment_id, account, player_id, amount_minor FROM ledger_entries"
            " WHERE phase = 'carry'",
        )
    )
    assert {row["adjustment_id"] for row in carried} == {
        f"archive:{archive.Month.of(OLD_MS).label}"
    }
    assert sum(int(row["amount_minor"]) for row in carried) == 0
    assert {
        (row["account"], int(row["amount_minor"]))
        for row in carried
        if row["player_id"] == wallet.player_id
    } == {("available", 10_000 - 1_000 - 100 + 700), ("held", 100)}
    assert count(platform, "SELECT COUNT(*) AS n FROM transaction_keys WHERE state IS NULL") == 0
    # The archive stored that day's settlement before its rows left (they are gone: only the
    # stored day can give it), and every closed day up to p-1's rollback today.
    stored = platform.run(partner_reports.settlement(platform.store, partner_id, old_day, old_day))
    assert stored == live
    old_n = OLD_MS // DAY_MS
    assert count(platform, "SELECT COUNT(*) AS n FROM settlement_days_done") == (
        partner_reports.closed_before(NOW_MS) - old_n
    )
    if platform.store.dialect == "postgresql":
        gone = platform.run(
            fetch_one(
                platform.store,
                "SELECT to_regclass($1) AS t",
                f"qwallet_partitions.transactions_{archive.Month.of(OLD_MS).suffix}",
            )
        )
        assert gone is not None and gone["t"] is None

    # The files: checksums and row counts as the manifest says, rows readable as JSON.
    manifest = archive.verify_manifest(out / archived.manifest)
    assert manifest["checkpoint"]["position"] >= 1
    files = {f["table"]: f for f in manifest["files"]}
    with gzip.open(out / files["transactions"]["name"], "rt") as source:
        rows = [json.loads(line) for line in source]
    assert {r["mm_transaction_id"] for r in rows} >= {"w-1", "r-1", "d-1", "late-1", "p-1"}
    with gzip.open(out / files["ledger_entries"]["name"], "rt") as source:
        entries = [json.loads(line) for line in source]
    assert len(entries) == files["ledger_entries"]["rows"]
    # w-1, r-1, d-1: four each; late-1: none; p-1: its begin (the rollback is this month's).
    assert sum(1 for e in entries if e["transaction_id"]) == 4 + 4 + 4 + 0 + 2
    assert sum(e["amount_minor"] for e in entries if e["transaction_id"]) == 0

    # The old sessions have expired: replays of withdraw / deposit need a live one.
    for each in (wallet, other):
        each.token = platform.create_session(each.player_id, each.username)

    # Replays: the same answer as the first time, no money moved.
    balance = wallet.balance()
    for key, endpoint, mm_id, amount in (
        ("w", "withdraw", "w-1", "10.00"),
        ("w-confirm", "confirmWithdrawal", "w-1", "10.00"),
        ("d", "deposit", "d-1", "7.00"),
        ("d-confirm", "confirmDeposit", "d-1", "7.00"),
    ):
        assert wallet.money(endpoint, mm_id, amount) == answers[key], key
    assert wallet.money("rollbackWithdrawal", "r-1", rollbackReason="x") == answers["r-rollback"]
    assert wallet.money("rollbackWithdrawal", "late-1", rollbackReason="y") == answers["blocked"]
    # Changed data and the state machine: 131, 132, 133, 130.
    assert wallet.money("withdraw", "w-1", "11.00")[1]["errorCode"] == 131
    assert wallet.money("confirmWithdrawal", "w-1", "10.01")[1]["errorCode"] == 131
    assert other.money("withdraw", "w-1", "10.00")[1]["errorCode"] == 131
    assert other.money("confirmWithdrawal", "w-1", "10.00")[1]["errorCode"] == 130
    assert wallet.money("rollbackWithdrawal", "w-1", rollbackReason="z")[1]["errorCode"] == 133
    assert wallet.money("withdraw", "r-1", "5.00")[1]["errorCode"] == 132
    assert wallet.money("confirmWithdrawal", "r-1", "5.00")[1]["errorCode"] == 132
    assert wallet.money("withdraw", "late-1", "3.00")[1]["errorCode"] == 132
    assert wallet.money("rollbackDeposit", "d-1", rollbackReason="z")[1]["errorCode"] == 133
    assert wallet.balance() == balance

    # New money after the archive, and reconciliation, incremental, stays clean.
    assert wallet.money("withdraw", "n-1", "2.00")[0] == 200
    assert wallet.money("confirmWithdrawal", "n-1", "2.00")[0] == 200
    checked = platform.run(reconcile.incremental(platform.store, NOW_MS))
    assert checked.ok, checked.as_json()
    assert checked.entries == 4
    # So does the full proof: the carried balances stand for the archived entries.
    full = platform.run(reconcile.reconcile(platform.store))
    assert full.ok, full.as_json()

    # Nothing is left to archive.
    assert run_archive(platform, out).months == []
    other.close()


def test_archive_refuses_open_months(platform: Platform, tmp_path: Path) -> None:
    with pytest.raises(OperatorError, match="current month"):
        platform.run(
            archive.archive(
                platform.store,
                tmp_path,
                archive.Month.of(NOW_MS).next(),
                operator="test",
                now_ms=NOW_MS,
            )
        )
    with pytest.raises(OperatorError, match="invalid date"):
        archive.parse_before("2026-13-01")


def test_a_changed_file_fails_verification(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wb") as sink:
        sink.write(b'{"a":1}\n{"a":2}\n')
    digest = archive._sha256(path)
    archive.verify_file(path, digest, 2)
    with pytest.raises(OperatorError, match="rows"):
        archive.verify_file(path, digest, 3)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(OperatorError, match="checksum"):
        archive.verify_file(path, digest, 2)


def test_the_commands(settings: Settings, platform: Platform, tmp_path: Path) -> None:
    url = settings.database_url
    created = as_json(qwallet(url, "db", "partitions", "--months-ahead", "5", "--json"))
    # The migration made three months ahead; PostgreSQL gets two more per table, SQLite none.
    assert created == {"created": 4 if platform.store.dialect == "postgresql" else 0}
    assert as_json(qwallet(url, "db", "partitions", "--json")) == {"created": 0}
    bad = qwallet(
        url, "db", "archive", "--before", "last week", "--out", str(tmp_path), check=False
    )
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    ahead = archive.Month.of(NOW_MS).next().next()
    refused = qwallet(
        url, "db", "archive", "--before", ahead.label, "--out", str(tmp_path), check=False
    )
    assert refused.returncode == 2 and "current month" in refused.stderr
    report = as_json(
        qwallet(url, "db", "archive", "--before", "2001-01-01", "--out", str(tmp_path), "--json")
    )
    assert report["months"] == []
    # verify-archive on a manifest whose file was changed.
    month_dir = tmp_path / "m"
    month_dir.mkdir()
    data = month_dir / "t.jsonl.gz"
    with gzip.open(data, "wb") as sink:
        sink.write(b'{"a":1}\n')
    manifest = month_dir / "archive-2001-01.json"
    entry = {"table": "transactions", "name": data.name, "sha256": archive._sha256(data), "rows": 1}
    manifest.write_text(json.dumps({"format": archive.FORMAT, "files": [entry]}))
    assert "OK (1 transactions)" in qwallet(url, "db", "verify-archive", str(manifest)).stdout
    data.write_bytes(data.read_bytes() + b"x")
    changed = qwallet(url, "db", "verify-archive", str(manifest), check=False)
    assert changed.returncode == 2 and "checksum" in changed.stderr
