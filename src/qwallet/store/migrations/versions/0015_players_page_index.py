"""the players list's keyset index

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

The console's players list and search page newest first by ``(created_at_ms, id)``
(``admin/queries.py``, ``search_players``). ``ix_players_created`` held only the time, so
wallets created in the same millisecond (an import, a bulk load) could not be ordered by the
index, and PostgreSQL read and sorted every wallet for each page (39 ms at 100,000 wallets,
growing with them). ``ix_players_created_id`` is the whole sort key: a page is an index range.

The build takes a lock that holds writes to ``players`` (every Wallet API call) for its length,
about a second per million wallets; on a larger database build it beforehand with
``CREATE INDEX CONCURRENTLY`` (docs/operations.md, "Upgrading to 0015"): the migration keeps a
valid index of that name on those columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NAME = "ix_players_created_id"
COLUMNS = ["created_at_ms", "id"]


def _prebuilt(bind: sa.Connection) -> bool:
    """Whether an operator built the index beforehand, valid and on the right columns; an
    invalid one (an interrupted concurrent build) is dropped, one on other columns refused."""
    row = bind.execute(
        sa.text(
            "SELECT i.indisvalid AS valid,"
            " ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            "       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            "       ORDER BY k.n) AS columns"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
        ),
        {"name": NAME},
    ).first()
    if row is None:
        return False
    if list(row.columns) != COLUMNS:
        raise RuntimeError(
            f"index {NAME} exists on ({', '.join(row.columns)}), not on ({', '.join(COLUMNS)}):"
            " drop it (DROP INDEX CONCURRENTLY) and upgrade again"
        )
    if not row.valid:
        op.drop_index(NAME, "players")
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _prebuilt(bind):
        op.create_index(NAME, "players", COLUMNS)
    op.drop_index("ix_players_created", "players")


def downgrade() -> None:
    op.create_index("ix_players_created", "players", ["created_at_ms"])
    op.drop_index(NAME, "players")
