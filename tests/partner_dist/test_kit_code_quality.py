"""``partner-kit/`` (the kit's source, tests and scripts) is held to the house style like
``src`` and ``tests`` (``tests/test_code_quality.py``): ruff check and ruff format, with the
root's configuration. ``mypy --strict`` covers ``partner-kit/src`` and ``partner-kit/scripts``
through the root's ``[tool.mypy] files``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize(
    "command", [["check", "partner-kit"], ["format", "--check", "partner-kit"]], ids=str
)
def test_the_kit_is_clean(command: list[str]) -> None:
    assert RUFF.exists(), f"ruff is not installed beside {sys.executable}"
    result = subprocess.run(
        [str(RUFF), *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_checks_the_kit() -> None:
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    assert {"partner-kit/src", "partner-kit/scripts"} <= set(files)
