"""What the README promises of the code, checked with the tests: ``ruff check``, ``ruff format
--check`` (the platform, its tests and the partner kit) and ``mypy --strict`` (configured in
``pyproject.toml``, the kit included) are clean.

They run as processes from the repository root with the same interpreter's tools, so a change
that breaks the house style fails the suite like a failing test would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        # The partner kit (partner-kit/, its own distribution) is held to the same house style.
        ["ruff", "check", "src", "tests", "partner-kit"],
        ["ruff", "format", "--check", "src", "tests", "partner-kit"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_code_is_clean(command: list[str]) -> None:
    tool = BIN / command[0]
    if not tool.exists():
        pytest.fail(
            f"{command[0]} is not installed beside {sys.executable}: pip install -e '.[test]'"
        )
    result = subprocess.run(
        [str(tool), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
