"""faults: sandbox fault rules, the faults they injected, and the sandbox partners' call log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Only sandbox partners have rows here (``qwallet.service.sandbox_faults``): a rule is refused for
a production partner, and the Wallet API writes the call log only for sandbox partners, with a
retention (``QWALLET_SANDBOX_CALL_RETENTION_S``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_fault_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partner_id", sa.Integer(), sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("after_commit", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("delay_ms", sa.Integer(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("every", sa.Integer(), nullable=True),
        sa.Column("seen", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("fired", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("removed_at_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "action IN ('error', 'delay', 'drop', 'expire_session')",
            name="ck_sandbox_fault_rules_action",
        ),
        sa.CheckConstraint(
            "(remaining IS NULL) <> (every IS NULL)", name="ck_sandbox_fault_rules_mode"
        ),
        sa.CheckConstraint(
            "remaining IS NULL OR remaining >= 0", name="ck_sandbox_fault_rules_remaining"
        ),
        sa.CheckConstraint("every IS NULL OR every >= 1", name="ck_sandbox_fault_rules_every"),
        sa.CheckConstraint(
            "(action = 'error') = (error_code IS NOT NULL)", name="ck_sandbox_fault_rules_code"
        ),
        sa.CheckConstraint(
            "(action = 'delay') = (delay_ms IS NOT NULL)", name="ck_sandbox_fault_rules_delay"
        ),
        sa.CheckConstraint("after_commit IN (0, 1)", name="ck_sandbox_fault_rules_after_commit"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_sandbox_fault_rules_partner", "sandbox_fault_rules", ["partner_id", "removed_at_ms"]
    )
    op.create_table(
        "sandbox_faults",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("rule_id", sa.Integer(), sa.ForeignKey("sandbox_fault_rules.id"), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("mm_transaction_id", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sandbox_faults_partner", "sandbox_faults", ["partner_id", "at_ms"])
    op.create_table(
        "sandbox_calls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("mm_transaction_id", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=False),
        sa.Column("fault_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sandbox_calls_partner", "sandbox_calls", ["partner_id", "at_ms"])
    op.create_index("ix_sandbox_calls_at", "sandbox_calls", ["at_ms"])


def downgrade() -> None:
    op.drop_index("ix_sandbox_calls_at", table_name="sandbox_calls")
    op.drop_index("ix_sandbox_calls_partner", table_name="sandbox_calls")
    op.drop_table("sandbox_calls")
    op.drop_index("ix_sandbox_faults_partner", table_name="sandbox_faults")
    op.drop_table("sandbox_faults")
    op.drop_index("ix_sandbox_fault_rules_partner", table_name="sandbox_fault_rules")
    op.drop_table("sandbox_fault_rules")
