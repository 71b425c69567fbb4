"""monitoring: the result and time of every reconciliation run, for the servers' /metrics

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

``qwallet reconcile`` runs in its own process and the console's run in one server process; a row
per run lets every server export the newest result (``qwallet_reconcile_last_ok``) and its time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.CheckConstraint("ok IN (0, 1)", name="ck_reconcile_runs_ok"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_runs")
