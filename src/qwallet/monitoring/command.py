"""``qwallet monitoring rules`` and ``qwallet monitoring dashboard``: print the shipped files.

Both are package data (``rules.yml``, ``dashboard.json``), printed byte for byte so that
``qwallet monitoring rules > /etc/prometheus/rules/qwallet.yml`` installs exactly what the suite
tested.
"""

from __future__ import annotations

import sys
from importlib import resources

import typer

RULES_FILE = "rules.yml"
DASHBOARD_FILE = "dashboard.json"

monitoring_app = typer.Typer(
    help="Prometheus rules and the Grafana dashboard for this version.", no_args_is_help=True
)


def packaged(name: str) -> str:
    """The text of a file shipped in ``qwallet.monitoring``."""
    return resources.files("qwallet.monitoring").joinpath(name).read_text(encoding="utf-8")


@monitoring_app.command("rules")
def rules_command() -> None:
    """Print the Prometheus recording and alerting rules (load them with rule_files)."""
    sys.stdout.write(packaged(RULES_FILE))


@monitoring_app.command("dashboard")
def dashboard_command() -> None:
    """Print the Grafana dashboard JSON (Dashboards → Import, or file provisioning)."""
    sys.stdout.write(packaged(DASHBOARD_FILE))
