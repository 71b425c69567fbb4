"""The lock files (``requirements/*.txt``, pip-compile with hashes) cover what ``pyproject.toml``
asks for: every runtime dependency is pinned in both files and every test dependency in the test
file, at a version the declared range admits, each with its hashes. A dependency added to
``pyproject.toml`` without re-locking fails here (docs/operations.md says how to re-lock).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\]+)", re.M)


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    return {canonicalize_name(match[1]): match[2] for match in PIN.finditer(text)}


def _declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts if not text.startswith("qwallet[")]


@pytest.mark.parametrize(
    ("lock", "extras"), [("runtime.txt", [None]), ("test.txt", [None, "test"])]
)
def test_lock_pins_every_declared_dependency(lock: str, extras: list[str | None]) -> None:
    pins = _pins(lock)
    for extra in extras:
        for requirement in _declared(extra):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{name} is not in requirements/{lock}: re-lock"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"requirements/{lock} pins {name}=={pins[name]}, outside {requirement.specifier}"
            )


@pytest.mark.parametrize("lock", ["runtime.txt", "test.txt"])
def test_every_pin_has_hashes(lock: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / lock).read_text())
    pinned = [block for block in blocks if PIN.match(block)]
    assert pinned
    for block in pinned:
        assert "--hash=sha256:" in block, block.splitlines()[0]
