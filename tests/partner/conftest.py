"""The main suite's kit helpers are the kit's own (``partner-kit/tests/kit_support.py``), loaded
from that file: one copy of ``serve``, ``make_kit`` and the two-store fixtures for both suites.
Other folders import ``serve`` from here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_KIT_SUPPORT = Path(__file__).resolve().parents[2] / "partner-kit" / "tests" / "kit_support.py"


def _load_kit_support() -> Any:
    # By file, not through sys.path: the kit's test folder must not shadow the main suite's names.
    name = "kit_support"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _KIT_SUPPORT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_support: Any = _load_kit_support()
KIT_TABLES = _support.KIT_TABLES
StoreFactory = _support.StoreFactory
kit_backend = _support.kit_backend
make_kit = _support.make_kit
new_store = _support.new_store
serve = _support.serve
skip_or_fail = _support.skip_or_fail


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "kit.db"
