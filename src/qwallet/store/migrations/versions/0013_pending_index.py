"""a partial index of the pending transactions; no second copy of the idempotency key

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

- ``ix_transactions_state (state, created_at_ms)`` indexed every transaction, although every
  query that relies on it reads the pending ones (the hold resolver's scan, the metrics gauges,
  the dashboard's capped counts, the archive's no-pending check, the console's pending filter).
  It becomes ``ix_transactions_pending (created_at_ms, kind) WHERE state = 'pending'``: the
  size of the backlog, not of the history; ``kind`` second, so a scan of one kind checks it in
  the index and a scan of both still walks time order. A filter on ``confirmed`` or
  ``rolled_back`` walks the time index instead (most rows have one of those states).
- ``ix_transactions_mm_id (partner_id, mm_transaction_id, kind)`` duplicated the primary key of
  ``transaction_keys``; it is dropped. A lookup by mmTransactionId reads the key, then the row
  by ``(qw_transaction_id, created_at_ms)`` (one partition on PostgreSQL).

On PostgreSQL ``transactions`` is partitioned (migration 0011) and an index of a partitioned
table cannot be built ``CONCURRENTLY``. An operator of a large database may build the new index
on every partition concurrently beforehand (docs/operations.md, "Upgrading a large database to
0013"): ``CREATE INDEX`` on the parent then attaches each valid one instead of building it, and
builds it only on partitions without one (the empty months ahead). An index left invalid by an
interrupted concurrent build is dropped here: it is never read but costs every write. Dropping
the two old indexes changes only the catalogue and deletes files. The migration holds the
locks it takes (writes to ``transactions`` wait) until it commits: with the index prebuilt,
seconds; without, as long as the build over every partition.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qwallet.store.partitioned_index import create_partial_index

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PENDING_INDEX = "ix_transactions_pending"
PENDING_COLUMNS = ["created_at_ms", "kind"]
PENDING = "state = 'pending'"
# How PostgreSQL prints the predicate (pg_get_expr), to recognise a prebuilt index.
PENDING_PRINTED = "(state = 'pending'::text)"

_DROPPED = (
    ("ix_transactions_state", ["state", "created_at_ms"]),
    ("ix_transactions_mm_id", ["partner_id", "mm_transaction_id", "kind"]),
)


def _create_pending_postgres(bind: sa.Connection) -> None:
    create_partial_index(
        bind,
        name=PENDING_INDEX,
        table="transactions",
        columns=PENDING_COLUMNS,
        predicate=PENDING,
        printed=PENDING_PRINTED,
        section="Upgrading a large database to 0013",
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _create_pending_postgres(bind)
    else:
        op.create_index(
            PENDING_INDEX, "transactions", PENDING_COLUMNS, sqlite_where=sa.text(PENDING)
        )
    for name, _columns in _DROPPED:
        op.drop_index(name, "transactions")


def downgrade() -> None:
    # A plain build on the parent (every partition): on a large database, plan it like 0011's
    # indexes (docs/operations.md).
    for name, columns in reversed(_DROPPED):
        op.create_index(name, "transactions", columns)
    op.drop_index(PENDING_INDEX, "transactions")
