"""Migration 0016: the stored settlement days, up, down and up again, on both databases.

The two tables are new: up creates them with their primary keys (a second summary of the same
group is refused by the key, which ``ON CONFLICT DO NOTHING`` relies on), down drops them and
leaves ``transactions`` as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command

from qwallet.store.migrate import alembic_config, upgrade
from tests.store.migration_db import empty_database, run

SUMMARY = (
    "INSERT INTO settlement_days (partner_id, day_number, currency, kind, state, n, total_minor)"
    " VALUES (1, 20000, 'XAG', 'withdrawal', 'confirmed', 3, 1013) ON CONFLICT DO NOTHING"
)
TABLES = (
    "SELECT COUNT(*) FROM settlement_days",
    "SELECT COUNT(*) FROM settlement_days_done",
)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request.param, tmp_path) as url:
        yield url


def test_the_tables_come_and_go(database: str) -> None:
    upgrade(database)
    run(database, "INSERT INTO partners (id, name, created_at_ms) VALUES (1, 'mm', 0)")
    run(database, SUMMARY, SUMMARY)  # the second is absorbed by the primary key
    run(
        database,
        "INSERT INTO settlement_days_done (partner_id, day_number) VALUES (1, 20000)",
    )
    assert [result[0][0] for result in run(database, *TABLES)] == [1, 1]

    command.downgrade(alembic_config(database), "0015")
    with pytest.raises(Exception, match="settlement_days"):
        run(database, TABLES[0])
    upgrade(database)
    assert [result[0][0] for result in run(database, *TABLES)] == [0, 0]
