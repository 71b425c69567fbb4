"""The platform's wheel carries the kit: ``qwallet_partner`` (from ``partner-kit/src``) beside
``qwallet``, with its ``py.typed``, and ``qwallet.partner`` as the re-export; the kit's tests and
scripts stay out."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]


def test_the_platform_wheel_contains_the_kit(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    shutil.copytree(ROOT / "partner-kit", source / "partner-kit", ignore=ignore)
    done = subprocess.run(
        [*BUILD_WHEEL, "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("qwallet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    kit_modules = {p.name for p in (ROOT / "partner-kit" / "src" / "qwallet_partner").glob("*.py")}
    assert {f"qwallet_partner/{m}" for m in kit_modules} <= names
    assert "qwallet_partner/py.typed" in names
    assert {n for n in names if n.startswith("qwallet/partner/")} == {"qwallet/partner/__init__.py"}
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "partner-kit/"))]
