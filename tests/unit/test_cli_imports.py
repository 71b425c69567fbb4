"""``qwallet bench`` and ``qwallet verify`` are tools around the platform, not part of it: the
command line loads them only when one of them runs, so the server and the operator commands
never import them (and a broken or missing benchmark dependency cannot break them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TOOLS = ("qwallet.bench", "qwallet.verify")


def modules_after(statement: str) -> list[str]:
    """The ``qwallet`` modules a fresh interpreter holds after ``statement``."""
    script = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return [name for name in json.loads(done.stdout) if name.startswith("qwallet")]


@pytest.mark.parametrize(
    "statement",
    [
        "import qwallet.cli",
        "import qwallet.app",
        "from qwallet.cli import app; app.registered_commands",
    ],
)
def test_the_runtime_does_not_import_bench_or_verify(statement: str) -> None:
    loaded = modules_after(statement)
    assert "qwallet.cli" in loaded or "qwallet.app" in loaded
    assert [name for name in loaded if name.startswith(TOOLS)] == []


def test_the_commands_load_them_when_asked() -> None:
    statement = (
        "from typer.main import get_command\n"
        "from qwallet.cli import app\n"
        "group = get_command(app)\n"
        "assert group.get_command(group.make_context('qwallet', ['--help'], resilient_parsing=True), 'bench') is not None\n"
        "assert group.get_command(group.make_context('qwallet', ['--help'], resilient_parsing=True), 'verify') is not None"
    )
    loaded = modules_after(statement)
    assert "qwallet.bench.command" in loaded and "qwallet.verify.command" in loaded
