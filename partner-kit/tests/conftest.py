"""Fixtures shared by the kit's tests (helpers that tests import are in ``kit_support``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit_support import kit_backend, new_store  # noqa: F401 - fixtures of every module


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "kit.db"
