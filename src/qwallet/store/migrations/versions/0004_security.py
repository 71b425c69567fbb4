"""security: sandbox partners, payment methods, plain-http callbacks, sign-in generations,
failure budgets shared by every server process

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SANDBOX_METHODS_CHECK = "sandbox = 1 OR (',' || payment_methods || ',') NOT LIKE '%,sandbox_card,%'"


def upgrade() -> None:
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sandbox", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("payment_methods", sa.Text(), nullable=False, server_default="wallet")
        )
        batch_op.add_column(
            sa.Column("allow_http_callback", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_check_constraint("ck_partners_sandbox", "sandbox IN (0, 1)")
        batch_op.create_check_constraint("ck_partners_sandbox_methods", SANDBOX_METHODS_CHECK)
        batch_op.create_check_constraint(
            "ck_partners_allow_http_callback", "allow_http_callback IN (0, 1)"
        )
    with op.batch_alter_table("players", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("web_generation", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("web_generation", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "failure_budgets",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    with op.batch_alter_table("failure_budgets", schema=None) as batch_op:
        batch_op.create_index("ix_failure_budgets_updated", ["updated_at_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("failure_budgets", schema=None) as batch_op:
        batch_op.drop_index("ix_failure_budgets_updated")
    op.drop_table("failure_budgets")
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_column("web_generation")
    with op.batch_alter_table("players", schema=None) as batch_op:
        batch_op.drop_column("web_generation")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_constraint("ck_partners_allow_http_callback", type_="check")
        batch_op.drop_constraint("ck_partners_sandbox_methods", type_="check")
        batch_op.drop_constraint("ck_partners_sandbox", type_="check")
        batch_op.drop_column("allow_http_callback")
        batch_op.drop_column("payment_methods")
        batch_op.drop_column("sandbox")
