"""The protocol report over a real server, on both databases: a studio that follows the
documentation passes every rule; one that breaks each rule fails exactly that rule.

The server runs on the module's manual clock, so the calls' times (and the retry schedule's
gaps) are set by moving it; the report is read through the service, the operator API and the
CLI (``--json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwallet.partner._outbox import RetrySchedule as KitRetrySchedule
from qwallet.service import api_keys, protocol_report
from tests.conftest import LiveServer, Platform
from tests.integration.test_sandbox_faults import add_rule, sandbox_wallet

QWALLET = str(Path(sys.executable).parent / "qwallet")
HOUR_MS = 3_600_000


def test_the_schedule_is_the_kits() -> None:
    kit, ours = KitRetrySchedule(), protocol_report.RETRY_SCHEDULE
    assert (ours.delays_s, ours.then_every_s, ours.window_s) == (
        kit.delays_s,
        kit.then_every_s,
        kit.window_s,
    )
    assert list(ours.offsets_s()) == list(kit.offsets_s())


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {rule["rule"]: rule["verdict"] for rule in report["rules"]}


def run_report(platform: Platform, partner: str, since_ms: int) -> dict[str, Any]:
    now = platform.clock.now_ms()
    return platform.run(protocol_report.report(platform.store, partner, since_ms, now + 1, now))


@pytest.fixture(scope="module")
def api_key(platform: Platform) -> str:
    return platform.run(api_keys.create_api_key(platform.store, "ci", platform.clock.now_ms()))


def test_a_studio_that_follows_the_documentation_passes(
    server: LiveServer, platform: Platform, api_key: str, database_url: str
) -> None:
    since = platform.clock.now_ms()
    name, wallet = sandbox_wallet(server, platform)
    # A withdraw confirmed at once.
    assert wallet.money("withdraw", "ok-1", "1.00")[0] == 200
    assert wallet.money("confirmWithdrawal", "ok-1", "1.00")[0] == 200
    # A withdraw that fails (injected 100 / HTTP 500) is rolled back.
    add_rule(platform, name, endpoint="withdraw", action="error", next_calls=1, error_code=100)
    assert wallet.money("withdraw", "fail-1", "1.00")[0] == 500
    assert wallet.money("rollbackWithdrawal", "fail-1")[0] == 200
    # A confirm whose connection drops is retried 5 s later, on the schedule.
    assert wallet.money("withdraw", "drop-1", "1.00")[0] == 200
    add_rule(platform, name, endpoint="confirmWithdrawal", action="drop", next_calls=1)
    with pytest.raises(httpx.TransportError):
        wallet.money("confirmWithdrawal", "drop-1", "1.00")
    platform.clock.advance(5_000)
    assert wallet.money("confirmWithdrawal", "drop-1", "1.00")[0] == 200
    # A slow answer (a delay fault) changes nothing for a studio that waits.
    add_rule(platform, name, endpoint="withdraw", action="delay", next_calls=1, delay_ms=200)
    assert wallet.money("withdraw", "slow-1", "1.00")[0] == 200
    assert wallet.money("rollbackWithdrawal", "slow-1")[0] == 200

    # A deposit that fails is rolled back as well.
    add_rule(platform, name, endpoint="deposit", action="error", next_calls=1, error_code=100)
    assert wallet.money("deposit", "dep-1", "1.00")[0] == 500
    assert wallet.money("rollbackDeposit", "dep-1")[0] == 200

    report = run_report(platform, name, since)
    assert report["verdict"] == "pass", json.dumps(report, indent=1)
    assert set(verdicts(report).values()) == {"pass"}
    assert report["summary"] == {
        "withdrawals": 4,
        "confirmed": 2,
        "rolledBack": 2,
        "pending": 0,
        "late": 0,
        "faultsInjected": 4,
    }
    reactions = {f["mmTransactionId"]: f for f in report["faults"]}
    assert reactions["fail-1"]["reaction"] == "rollbackWithdrawal sent"
    assert reactions["drop-1"]["answer"] == "no answer (connection dropped)"
    assert reactions["drop-1"]["verdict"] == "pass"
    assert reactions["dep-1"]["reaction"] == "rollbackDeposit sent"

    # The same report through the operator API and the CLI.
    with httpx.Client(base_url=server.url) as client:
        answer = client.get(
            f"/api/partners/{name}/report",
            params={"since": since, "until": platform.clock.now_ms() + 1},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert answer.status_code == 200, answer.text
        assert verdicts(answer.json()) == verdicts(report)
        refused = client.get(f"/api/partners/{name}/report")
        assert refused.status_code == 401
    env = {**os.environ, "QWALLET_DATABASE_URL": database_url}
    cli = subprocess.run(
        [QWALLET, "partners", "report", name, "--since", str(since),
         "--until", str(platform.clock.now_ms() + 1), "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert verdicts(json.loads(cli.stdout)) == verdicts(report)
    wallet.close()


def test_a_studio_that_breaks_each_rule_fails_it(
    server: LiveServer, platform: Platform, database_url: str
) -> None:
    since = platform.clock.now_ms()
    name, wallet = sandbox_wallet(server, platform, balance="1000.00")
    # withdraw-once: the same withdraw sent twice.
    wallet.money("withdraw", "twice", "1.00")
    wallet.money("withdraw", "twice", "1.00")
    wallet.money("rollbackWithdrawal", "twice")
    # same-data: an id reused with another amount (131).
    wallet.money("withdraw", "reused", "1.00")
    assert wallet.money("withdraw", "reused", "2.00")[1]["errorCode"] == 131
    wallet.money("confirmWithdrawal", "reused", "1.00")
    # rollback-after-failed-withdraw and fault-reactions: an injected 121, never rolled back.
    add_rule(platform, name, endpoint="withdraw", action="error", next_calls=1, error_code=121)
    assert wallet.money("withdraw", "no-rollback", "1.00")[1]["errorCode"] == 121
    # retry-schedule: a confirm that failed (after the commit) is retried a minute later.
    wallet.money("withdraw", "slow-retry", "1.00")
    add_rule(
        platform, name, endpoint="confirmWithdrawal", action="error", next_calls=1,
        error_code=100, after_commit=False,
    )  # fmt: skip
    assert wallet.money("confirmWithdrawal", "slow-retry", "1.00")[0] == 500
    platform.clock.advance(60_000)
    assert wallet.money("confirmWithdrawal", "slow-retry", "1.00")[0] == 200
    # confirm-or-rollback: one confirmed after the 48 h window, one never finished.
    wallet.money("withdraw", "late", "1.00")
    wallet.money("withdraw", "never", "1.00")
    platform.clock.advance(49 * HOUR_MS)
    assert wallet.money("confirmWithdrawal", "late", "1.00")[0] == 200

    report = run_report(platform, name, since)
    assert report["verdict"] == "fail"
    assert verdicts(report) == {
        "withdraw-once": "fail",
        "same-data": "fail",
        "rollback-after-failed-withdraw": "fail",
        "confirm-or-rollback": "fail",
        "retry-schedule": "fail",
        "fault-reactions": "fail",
    }, json.dumps(report, indent=1)
    rules = {rule["rule"]: rule for rule in report["rules"]}
    # A reuse with other data is a second withdraw of the id too.
    assert sorted(e["mmTransactionId"] for e in rules["withdraw-once"]["examples"]) == [
        "reused",
        "twice",
    ]
    assert [e["mmTransactionId"] for e in rules["same-data"]["examples"]] == ["reused"]
    assert [e["mmTransactionId"] for e in rules["rollback-after-failed-withdraw"]["examples"]] == [
        "no-rollback"
    ]
    assert sorted(e["mmTransactionId"] for e in rules["confirm-or-rollback"]["examples"]) == [
        "late",
        "never",
    ]
    assert [e["mmTransactionId"] for e in rules["retry-schedule"]["examples"]] == ["slow-retry"]
    assert "late" in rules["retry-schedule"]["examples"][0]["problem"]
    assert report["summary"]["pending"] == 1 and report["summary"]["late"] == 1
    # The CLI exits 1 on a failed verdict.
    env = {**os.environ, "QWALLET_DATABASE_URL": database_url}
    cli = subprocess.run(
        [QWALLET, "partners", "report", name, "--since", str(since),
         "--until", str(platform.clock.now_ms() + 1)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 1 and "verdict: FAIL" in cli.stdout, cli.stdout + cli.stderr
    wallet.close()


def test_the_report_examines_at_most_the_cap_newest_withdrawals(
    server: LiveServer, platform: Platform
) -> None:
    since = platform.clock.now_ms()
    name, wallet = sandbox_wallet(server, platform)
    # The oldest withdrawal stays pending: it shows in the counts only when it is examined.
    assert wallet.money("withdraw", "cap-old", "1.00")[0] == 200
    platform.clock.advance(1_000)
    oldest_kept = platform.clock.now_ms()
    for mm in ("cap-1", "cap-2"):
        assert wallet.money("withdraw", mm, "1.00")[0] == 200
        assert wallet.money("confirmWithdrawal", mm, "1.00")[0] == 200
        platform.clock.advance(1_000)
    wallet.close()
    now = platform.clock.now_ms()

    whole = platform.run(protocol_report.report(platform.store, name, since, now + 1, now, cap=10))
    assert whole["coverage"] == {"capped": False, "withdrawalsCap": 10, "coveredSinceMs": since}
    assert (whole["summary"]["withdrawals"], whole["summary"]["pending"]) == (3, 1)

    capped = platform.run(protocol_report.report(platform.store, name, since, now + 1, now, cap=2))
    summary, coverage = capped["summary"], capped["coverage"]
    assert (coverage["capped"], coverage["withdrawalsCap"]) == (True, 2)
    assert (summary["withdrawals"], summary["confirmed"], summary["pending"]) == (2, 2, 0)
    # The cap's oldest withdrawal starts the covered range: the pending one was not read.
    assert oldest_kept <= coverage["coveredSinceMs"] < now
    assert capped["rules"][3]["checked"] == 2
