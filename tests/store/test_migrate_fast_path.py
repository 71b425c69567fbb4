"""``migrate.upgrade`` on a database at the head revision reads ``alembic_version`` and returns,
without loading Alembic; anything else goes through Alembic (both databases)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwallet.store import migrate
from tests.conftest import BACKENDS, fresh_database_url

# Whether the upgrade loaded Alembic, and what the database holds afterwards.
PROBE = """
import json, sys
from qwallet.store import migrate
migrate.upgrade(sys.argv[1])
print(json.dumps({"alembic": "alembic" in sys.modules,
                  "revision": migrate.stored_revision(sys.argv[1])}))
"""


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(str(request.param), tmp_path)


def _upgrade_in_a_new_process(url: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, url],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_the_head_is_the_one_alembic_finds() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite:///unused.db"))
    assert [migrate.head_revision()] == list(script.get_heads())


def test_a_database_at_the_head_is_not_migrated_again(url: str) -> None:
    assert migrate.stored_revision(url) == migrate.head_revision()
    assert _upgrade_in_a_new_process(url) == {
        "alembic": False,
        "revision": migrate.head_revision(),
    }


def test_a_database_below_the_head_is_migrated(url: str) -> None:
    from alembic import command

    command.downgrade(migrate.alembic_config(url), "0018")
    assert migrate.stored_revision(url) == "0018"
    assert _upgrade_in_a_new_process(url) == {"alembic": True, "revision": migrate.head_revision()}


def test_a_new_sqlite_file_is_created_by_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'new.db'}"
    assert migrate.stored_revision(url) is None
    assert _upgrade_in_a_new_process(url) == {"alembic": True, "revision": migrate.head_revision()}


def test_an_unreachable_database_is_left_to_alembic_to_report() -> None:
    assert migrate.stored_revision("postgresql://nobody@127.0.0.1:1/none") is None
