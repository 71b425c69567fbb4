"""live-session indexes, the session prune, the moved checkpoint balances

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

- ``sessions``: ``ix_sessions_player`` (every session a player ever had) is replaced by
  ``ix_sessions_player_live``, a partial index of the unrevoked sessions by player and expiry,
  so revoking a player's sessions (block, sign-out) reads only the live ones; and
  ``ix_sessions_expires`` finds the sessions the periodic prune deletes (service/sessions.py),
  a batch at a time.
- ``checkpoint_balances``: ``ix_checkpoint_balances_position``, so the incremental
  reconciliation finds the accounts a run moved (position above the last checkpoint) as an
  index range (service/reconcile.py).
- ``reconcile_jobs`` and ``reconcile_lease``: the console's background reconciliation, one at a
  time across every server process (service/reconcile_jobs.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LIVE = "revoked_at_ms IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_sessions_player_live",
        "sessions",
        ["player_id", "expires_at_ms"],
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )
    op.drop_index("ix_sessions_player", "sessions")
    op.create_index("ix_sessions_expires", "sessions", ["expires_at_ms"])
    op.create_index("ix_checkpoint_balances_position", "checkpoint_balances", ["position", "owner"])

    op.create_table(
        "reconcile_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("done_units", sa.Integer(), nullable=False),
        sa.Column("total_units", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("mode IN ('since', 'full')", name="ck_reconcile_jobs_mode"),
        sa.CheckConstraint(
            "state IN ('running', 'ok', 'differences', 'failed', 'abandoned')",
            name="ck_reconcile_jobs_state",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "reconcile_lease",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_reconcile_lease_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_lease")
    op.drop_table("reconcile_jobs")
    op.drop_index("ix_checkpoint_balances_position", "checkpoint_balances")
    op.drop_index("ix_sessions_expires", "sessions")
    op.create_index("ix_sessions_player", "sessions", ["player_id"])
    op.drop_index("ix_sessions_player_live", "sessions")
