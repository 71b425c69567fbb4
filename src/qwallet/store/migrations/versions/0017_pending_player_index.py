"""a partial index of the pending transactions by player

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03

The reconcile's hold check sums each checked wallet's pending transactions
(``service/reconcile.py``, ``_WALLET_HOLDS``). With only ``ix_transactions_player
(player_id, created_at_ms)`` to find them, PostgreSQL read every transaction the wallet ever had
and filtered ``state = 'pending'`` afterwards: the incremental reconcile's cost per moved wallet
grew with the wallet's history (5.9 times per entry on a loaded database, docs/benchmarks.md).
``ix_transactions_pending_player (player_id) WHERE state = 'pending'`` holds the backlog only:
a wallet's holds are a probe of it, whatever the history.

The build uses the shared mechanism of 0013 (``store/partitioned_index.py``): on a large
database an operator builds it on every partition concurrently beforehand (docs/operations.md,
"Upgrading a large database to 0017"); the migration attaches those and builds only the
missing ones. Without the prebuild, writes to ``transactions`` wait for a scan of every
partition.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qwallet.store.partitioned_index import create_partial_index

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

NAME = "ix_transactions_pending_player"
COLUMNS = ["player_id"]
PENDING = "state = 'pending'"
# How PostgreSQL prints the predicate (pg_get_expr), to recognise a prebuilt index.
PENDING_PRINTED = "(state = 'pending'::text)"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        create_partial_index(
            bind,
            name=NAME,
            table="transactions",
            columns=COLUMNS,
            predicate=PENDING,
            printed=PENDING_PRINTED,
            section="Upgrading a large database to 0017",
        )
    else:
        op.create_index(NAME, "transactions", COLUMNS, sqlite_where=sa.text(PENDING))


def downgrade() -> None:
    op.drop_index(NAME, "transactions")
