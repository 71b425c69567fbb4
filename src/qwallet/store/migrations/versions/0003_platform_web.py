"""platform web: logins, operators, payments, hold resolutions, audit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at_ms"], unique=False)

    op.create_table(
        "hold_resolutions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("qw_transaction_id", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("partner_status", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "action IN ('confirmed', 'rolled_back', 'retry_later', 'already_final')",
            name="ck_hold_resolutions_action",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hold_resolutions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_hold_resolutions_transaction", ["qw_transaction_id"], unique=False
        )

    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("disabled_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "payment_orders",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("player_id", sa.Text(), nullable=False),
        sa.Column("cp_order_id", sa.Text(), nullable=False),
        sa.Column("server_id", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("product_name", sa.Text(), nullable=True),
        sa.Column("product_desc", sa.Text(), nullable=True),
        sa.Column("product_number", sa.Integer(), nullable=False),
        sa.Column("product_price", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("ext_params", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=True),
        sa.Column("provider_reference", sa.Text(), nullable=True),
        sa.Column("qw_transaction_id", sa.Text(), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_delivery_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("paid_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("delivered_at_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "state IN ('created', 'paying', 'paid', 'delivered', 'failed', 'declined')",
            name="ck_payment_orders_state",
        ),
        sa.CheckConstraint("amount_minor > 0", name="ck_payment_orders_amount_positive"),
        sa.CheckConstraint("product_number > 0", name="ck_payment_orders_number_positive"),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
        ),
        sa.ForeignKeyConstraint(
            ["player_id"],
            ["players.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("partner_id", "cp_order_id", name="uq_payment_orders_cp_order_id"),
    )
    with op.batch_alter_table("payment_orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_orders_delivery", ["state", "next_delivery_at_ms"], unique=False
        )
        batch_op.create_index(
            "ix_payment_orders_player", ["player_id", "created_at_ms"], unique=False
        )

    op.create_table(
        "player_logins",
        sa.Column("player_id", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["player_id"],
            ["players.id"],
        ),
        sa.PrimaryKeyConstraint("player_id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'retry', 'failed')", name="ck_payment_attempts_outcome"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["payment_orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_payment_attempts_order", ["order_id", "attempt"], unique=False)

    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("callback_secret", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("callback_format", sa.Text(), server_default="form", nullable=False)
        )
        batch_op.add_column(sa.Column("query_username", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("query_password", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("payment_currency", sa.Text(), nullable=True))
        batch_op.create_check_constraint(
            "ck_partners_callback_format", "callback_format IN ('form', 'json')"
        )


def downgrade() -> None:
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_constraint("ck_partners_callback_format", type_="check")
        batch_op.drop_column("payment_currency")
        batch_op.drop_column("query_password")
        batch_op.drop_column("query_username")
        batch_op.drop_column("callback_format")
        batch_op.drop_column("callback_secret")
        batch_op.drop_column("display_name")

    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_attempts_order")

    op.drop_table("payment_attempts")
    op.drop_table("player_logins")
    with op.batch_alter_table("payment_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_orders_player")
        batch_op.drop_index("ix_payment_orders_delivery")

    op.drop_table("payment_orders")
    op.drop_table("operators")
    with op.batch_alter_table("hold_resolutions", schema=None) as batch_op:
        batch_op.drop_index("ix_hold_resolutions_transaction")

    op.drop_table("hold_resolutions")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_at")

    op.drop_table("audit_log")
