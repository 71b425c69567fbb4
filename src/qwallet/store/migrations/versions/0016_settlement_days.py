"""settlement_days: the settlement of closed UTC days, stored once

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03

The settlement report summed every transaction a partner finished in the requested days
(``ix_transactions_partner_updated``): 31 days of a busy partner cost 640 ms at 20 million
transactions, growing with the traffic per day. A closed day never changes (its transactions
are terminal and ``updated_at_ms`` is written once), so its totals are computed once and kept in
``settlement_days``; ``settlement_days_done`` records which (partner, day) are summarized, also
the days without any finished transaction. Both tables are new and empty: no lock on
``transactions``, nothing to prebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settlement_days",
        sa.Column("partner_id", sa.Integer(), sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("day_number", sa.Integer(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("partner_id", "day_number", "currency", "kind", "state"),
    )
    op.create_table(
        "settlement_days_done",
        sa.Column("partner_id", sa.Integer(), sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("day_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("partner_id", "day_number"),
    )


def downgrade() -> None:
    op.drop_table("settlement_days_done")
    op.drop_table("settlement_days")
