"""The kit's locks (``partner-kit/requirements*.txt``) cover what ``partner-kit/pyproject.toml``
asks for, with hashes, at the very versions of the platform's lock (``requirements/test.txt`` is
their constraint): the kit alone is tested with what the platform runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "partner-kit"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\]+)", re.M)


def _pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in PIN.finditer(path.read_text())}


def _declared(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((KIT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def test_the_runtime_dependencies_are_only_what_the_kit_imports() -> None:
    project = tomllib.loads((KIT / "pyproject.toml").read_text())["project"]
    assert sorted(Requirement(t).name for t in project["dependencies"]) == ["httpx", "msgspec"]
    extras = project["optional-dependencies"]
    assert [Requirement(t).name for t in extras["server"]] == ["starlette"]
    assert [Requirement(t).name for t in extras["postgres"]] == ["asyncpg"]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("requirements.txt", []), ("requirements-test.txt", ["server", "postgres", "test"])],
)
def test_each_lock_pins_the_declared_dependencies_as_the_platform_does(
    lock: str, extras: list[str]
) -> None:
    pins = _pins(KIT / lock)
    platform = _pins(ROOT / "requirements" / "test.txt")
    for requirement in _declared(extras):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in partner-kit/{lock}: re-lock (partner-kit/README.md)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    for name, version in pins.items():
        assert platform.get(name) == version, f"partner-kit/{lock}: {name}=={version}"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (KIT / lock).read_text())
    for block in blocks:
        if PIN.match(block):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    # Nothing of the platform's own stack in the kit's runtime lock.
    if lock == "requirements.txt":
        assert not {"starlette", "asyncpg", "sqlalchemy", "uvicorn"} & set(pins)
