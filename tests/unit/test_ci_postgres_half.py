"""In CI (``CI`` set, as ``.ci/run`` runs) the PostgreSQL half of the suite fails when no server
answers, instead of skipping and leaving a green run that proved half of what it claims; on a
developer's machine it skips, with the reason. Both ways of reaching PostgreSQL are held to it:
the suite's fixtures (``tests/conftest.py``) and the store suite's own (``tests/store``).

Each case runs pytest on a few PostgreSQL tests against a port where nothing listens.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_SERVER = "postgresql://postgres@127.0.0.1:1/postgres"
TARGETS = {
    "suite fixtures": "tests/integration/test_schema.py",
    "store fixtures": "tests/store/test_sessions_and_limits.py::test_verify_session_and_get_balance",
}


@pytest.mark.parametrize("target", TARGETS.values(), ids=TARGETS.keys())
@pytest.mark.parametrize("ci", [True, False], ids=["CI", "developer"])
def test_the_postgres_half_without_a_server(target: str, ci: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["QWALLET_TEST_PG_URL"] = NO_SERVER
    if ci:
        env["CI"] = "true"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "postgres",
         "-rfs", target],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    counts = outcomes(output)
    assert counts.get("passed", 0) == 0, output
    if ci:
        assert result.returncode == 1, output
        assert counts.get("failed", 0) + counts.get("error", 0) >= 1, output
        assert counts.get("skipped", 0) == 0 and "CI must run this half" in output, output
    else:
        assert result.returncode == 0, output
        assert counts.get("skipped", 0) >= 1, output
        assert counts.get("failed", 0) + counts.get("error", 0) == 0, output


def outcomes(output: str) -> dict[str, int]:
    """The counts of pytest's last line: ``1 deselected, 1 error in 2.68s`` → ``{"error": 1, …}``."""
    summary = output.strip().splitlines()[-1]
    return {
        word.rstrip("s") if word.startswith("error") else word: int(number)
        for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)
    }
