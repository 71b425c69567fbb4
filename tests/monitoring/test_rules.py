"""The shipped rules and dashboard: promtool's checks and unit tests, the commands that print
them, and every metric they use exported by a running ``qwallet serve --workers 2``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from qwallet.monitoring.command import RULES_FILE, monitoring_app, packaged
from tests.conftest import fresh_database_url
from tests.monitoring import prom
from tests.reliability.harness import QWALLET, ServerProcess, provision

HERE = Path(__file__).parent
POOL_METRICS = {
    "qwallet_db_pool_connections_in_use",
    "qwallet_db_pool_connections_open",
    "qwallet_db_pool_connections_max",
}


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "qwallet.yml"
    path.write_text(packaged(RULES_FILE), encoding="utf-8")
    result = subprocess.run(
        [prom.binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in prom.rules()['groups'])} rules" in result.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    """tests/monitoring/rules_test.yml against the shipped rules (annotations left out: the unit
    tests compare labels; the templates are checked above and rendered end to end)."""
    stripped = prom.rules()
    for group in stripped["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(stripped), encoding="utf-8")
    shutil.copy(HERE / "rules_test.yml", tmp_path / "rules_test.yml")
    result = subprocess.run(
        [prom.binary("promtool"), "test", "rules", "rules_test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(prom.alert_names()) <= tested, set(prom.alert_names()) - tested


def test_every_alert_says_what_and_how_bad() -> None:
    for group in prom.rules()["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_commands_print_the_packaged_files() -> None:
    runner = CliRunner()
    rules = runner.invoke(monitoring_app, ["rules"])
    assert rules.exit_code == 0, rules.output
    assert rules.output == packaged(RULES_FILE)
    assert yaml.safe_load(rules.output)["groups"]
    board = runner.invoke(monitoring_app, ["dashboard"])
    assert board.exit_code == 0, board.output
    assert json.loads(board.output)["panels"]
    assert runner.invoke(monitoring_app, ["nonsense"]).exit_code != 0


def test_the_dashboard_uses_only_rules_and_exported_names() -> None:
    board = prom.dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
    recorded = prom.recorded_names()
    used_records = {name for name in prom.metric_names(prom.dashboard_expressions()) if ":" in name}
    assert used_records <= recorded, used_records - recorded


@pytest.fixture(params=["sqlite", "postgres"])
def multiprocess_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    for url in fresh_database_url(str(request.param), tmp_path):
        server = ServerProcess(url, tmp_path / "server.log", workers=2)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_every_metric_the_rules_and_dashboard_use_is_exported(
    multiprocess_server: ServerProcess,
) -> None:
    """On a fresh database, after one wallet call and one reconciliation, with two worker
    processes: every raw series name of the rules and the dashboard is in /metrics."""
    server = multiprocess_server
    world = provision(server.database_url, player_count=1, balance_minor=1000)
    with httpx.Client(
        base_url=server.url, auth=(world.username, world.password), timeout=10
    ) as client:
        for _ in range(4):  # reach both processes
            answer = client.post("/wallet/getBalance", json={"token": world.players[0].token})
            assert answer.status_code == 200, answer.text
        result = subprocess.run(
            [QWALLET, "reconcile"],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        exported: set[str] = set()
        text = client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            exported |= {sample.name for sample in family.samples}
        health = client.get("/healthz").json()
    used = prom.metric_names(prom.rule_expressions() + prom.dashboard_expressions())
    raw = {name for name in used if ":" not in name} - {"up"}  # up: Prometheus's own
    assert raw - exported == set(), f"used but not exported: {raw - exported}"
    assert exported >= POOL_METRICS
    assert "qwallet_reconcile_last_ok 1" in text
    assert f'qwallet_build_info{{version="{health["version"]}"}} 1' in text
    assert "qwallet_ready 1" in text
