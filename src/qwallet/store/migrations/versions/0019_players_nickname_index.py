"""the players search's index: lowered nickname, then id

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03

The console's players search (``admin/queries.py``, ``search_players``) matched
``LOWER(nickname) LIKE '%text%'`` while walking the players newest first: a text few nicknames
hold read every wallet (121 ms at 200,000 wallets, growing with them). It now finds the
nicknames that start with the text, by (lowered nickname, id): ``ix_players_nickname`` holds
that order, so a page is a range of about a page of the index whatever the number of wallets.
On PostgreSQL the lowered nickname is compared ``COLLATE "C"`` (by code point): under a
language's collation the strings that start alike need not be neighbours in the index.

The build takes a lock that holds writes to ``players`` (every Wallet API call) for its length,
about a second per million wallets; on a larger database build it beforehand with
``CREATE INDEX CONCURRENTLY`` (docs/operations.md, "Upgrading a large database to 0019"): the
migration keeps a valid index of that name and definition, builds again one left invalid by an
interrupted build, and stops at one that is something else.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

NAME = "ix_players_nickname"
POSTGRES = f'CREATE INDEX {NAME} ON players ((lower(nickname) COLLATE "C"), id)'
# How PostgreSQL prints that index after "USING" (pg_get_indexdef), to recognise a prebuilt one.
PRINTED = 'btree (lower(nickname) COLLATE "C", id)'
SQLITE = f"CREATE INDEX {NAME} ON players (lower(nickname), id)"


def _prebuilt(bind: sa.Connection) -> bool:
    """Whether an operator built the index beforehand, valid and the same index; an invalid one
    (an interrupted concurrent build) is dropped, one that is something else refused."""
    row = bind.execute(
        sa.text(
            "SELECT i.indisvalid AS valid, i.indrelid = 'players'::regclass AS on_players,"
            " split_part(pg_get_indexdef(i.indexrelid), ' USING ', 2) AS printed"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
        ),
        {"name": NAME},
    ).first()
    if row is None:
        return False
    if not row.on_players or row.printed != PRINTED:
        raise RuntimeError(
            f"index {NAME} exists as {row.printed!r}, not as {PRINTED!r} on players:"
            " drop it (DROP INDEX CONCURRENTLY) and upgrade again"
        )
    if not row.valid:
        op.drop_index(NAME, "players")
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        op.execute(SQLITE)
    elif not _prebuilt(bind):
        op.execute(POSTGRES)


def downgrade() -> None:
    op.drop_index(NAME, "players")
