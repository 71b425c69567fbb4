"""live-session indexes, the session prune, the moved checkpoint balances

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-02

- ``sessions``: ``ix_sessions_player`` (every session a player ever had) is replaced by
  ``ix_sessions_player_live``, a partial index of the unrevoked sessions by player and expiry,
  so revoking a player's sessions (block, sign-out) reads only the live ones; and
  ``ix_sessions_expires`` finds the sessions the periodic prune deletes (service/sessions.py),
  a batch at a time.
- ``checkpoint_balances``: ``ix_checkpoint_balances_position``, so the incremental
  reconciliation finds the accounts a run moved (position above the last checkpoint) as an
  index range (service/reconcile.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
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


def downgrade() -> None:
    op.drop_index("ix_checkpoint_balances_position", "checkpoint_balances")
    op.drop_index("ix_sessions_expires", "sessions")
    op.create_index("ix_sessions_player", "sessions", ["player_id"])
    op.drop_index("ix_sessions_player_live", "sessions")
