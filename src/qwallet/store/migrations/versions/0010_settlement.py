"""settlement: indexes for the partner transactions listing and the daily settlement report

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

``GET /partner/transactions`` walks one partner's transactions in (created_at_ms,
qw_transaction_id) order from a time: ``ix_transactions_partner_created`` serves it as one index
range scan, so a page costs O(log n + page size) whatever the table holds. The settlement report
sums the transactions a partner finished (confirmed or rolled back) on given UTC days: their
``updated_at_ms`` is the time of that terminal step and never changes afterwards, so
``ix_transactions_partner_updated`` reaches exactly the rows of those days.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_transactions_partner_created",
        "transactions",
        ["partner_id", "created_at_ms", "qw_transaction_id"],
        unique=False,
    )
    op.create_index(
        "ix_transactions_partner_updated",
        "transactions",
        ["partner_id", "updated_at_ms"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_partner_updated", table_name="transactions")
    op.drop_index("ix_transactions_partner_created", table_name="transactions")
