"""Prometheus for the tests: the binaries, the metric names a rule or panel uses, and a real
Prometheus server in a temporary directory on a free loopback port, stopped by its PID."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

from qwallet.monitoring.command import DASHBOARD_FILE, RULES_FILE, packaged
from tests.conftest import skip_or_fail
from tests.reliability.harness import free_port


def binary(name: str) -> str:
    """``promtool`` or ``prometheus`` (Debian's ``prometheus`` package has both)."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed (Debian: apt-get install prometheus)")
    assert path is not None
    return path


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(packaged(RULES_FILE))
    return loaded


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(packaged(DASHBOARD_FILE))
    return loaded


def rule_expressions() -> list[str]:
    return [rule["expr"] for group in rules()["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {
        rule["record"] for group in rules()["groups"] for rule in group["rules"] if "record" in rule
    }


def alert_names() -> list[str]:
    return [
        rule["alert"] for group in rules()["groups"] for rule in group["rules"] if "alert" in rule
    ]


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expressions: Iterable[str]) -> set[str]:
    """The series names an expression selects: ours (``qwallet_…``, recorded ``job:qwallet_…``)
    and Prometheus's own ``up``. Label values are skipped (quoted strings go first)."""
    names: set[str] = set()
    for expr in expressions:
        for token in _NAME.findall(_QUOTED.sub('""', expr)):
            if "qwallet" in token or token == "up":
                names.add(token)
    return names


# -- the rules at test speed ---------------------------------------------------------------------

_RANGE = re.compile(r"\[(\d+[smhd])+\]")


def shortened_rules(range_s: int, for_s: int) -> dict[str, Any]:
    """The shipped rules with only their durations changed: every range ``[5m]``… becomes
    ``[range_s]`` and every ``for`` becomes ``for_s`` (alerts without one keep none), so that an
    end-to-end run takes seconds. Expressions, thresholds and labels are the shipped ones."""
    shortened = rules()
    for group in shortened["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(f"[{range_s}s]", rule["expr"])
            if "for" in rule:
                rule["for"] = f"{for_s}s"
    return shortened


class Prometheus:
    """``prometheus`` with its own configuration, storage and port under ``directory``."""

    def __init__(
        self,
        directory: Path,
        rule_set: dict[str, Any],
        scrape: dict[str, Any],
        *,
        interval_s: int = 1,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "rules.yml").write_text(yaml.safe_dump(rule_set), encoding="utf-8")
        config = {
            "global": {
                "scrape_interval": f"{interval_s}s",
                "scrape_timeout": f"{interval_s}s",
                "evaluation_interval": f"{interval_s}s",
            },
            "rule_files": [str(directory / "rules.yml")],
            "scrape_configs": [scrape],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = directory / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={self.directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {timeout_s} s: {self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return ""

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self) -> dict[str, dict[str, Any]]:
        """Active alerts by name (state ``pending`` or ``firing``)."""
        found: dict[str, dict[str, Any]] = {}
        for alert in self.api("alerts")["alerts"]:
            name = alert["labels"]["alertname"]
            if found.get(name, {}).get("state") != "firing":
                found[name] = alert
        return found

    def firing(self) -> set[str]:
        return {name for name, alert in self.alerts().items() if alert["state"] == "firing"}

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)
