"""``qwallet --version`` names the installed package, and the changelog is kept."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

from qwallet.demo.launch import qwallet_command

ROOT = Path(__file__).resolve().parents[1]


def test_version_option_prints_the_installed_package_version() -> None:
    done = subprocess.run(
        [*qwallet_command(), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"qwallet {metadata.version('qwallet')}\n"


def test_changelog_has_an_unreleased_section_and_names_the_version_line() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased", headings
    assert metadata.version("qwallet") in headings[1:], "the installed version has no section"
    assert "`qwallet --version`" in text and "`qwallet <version>`" in text
