"""The database schema, as SQLAlchemy Core metadata (the same for SQLite and PostgreSQL).

Only migrations and schema checks use this module; the hot path runs raw SQL. Times are integer
milliseconds since the Unix epoch (``*_at_ms``) so both dialects store and compare them alike;
money is integer minor units (``*_minor``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData()

PLATFORM_ID = Text().with_variant(UUID(as_uuid=False), "postgresql")
"""An id the platform generates as a UUID (transactions): ``uuid`` on PostgreSQL
(16 bytes instead of 37 of text, in the row and in every index; migration 0014), ``text`` on
SQLite. Python sees ``str`` on both (``store/postgres.py`` registers a text codec). Ids that
may come from outside (players, mmTransactionIds, orders) stay ``Text``, and so does a ledger
entry's ``adjustment_id`` (it may name an archived month)."""

partners = Table(
    "partners",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    # JSON list of CIDRs; NULL or empty means every address is allowed.
    Column("ip_allow", Text, nullable=True),
    Column("client_url", Text, nullable=True),
    Column("callback_url", Text, nullable=True),
    Column("query_url", Text, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    # Shown in the lobby; the name is the fallback.
    Column("display_name", Text, nullable=True),
    # Shared key of the payment callback's MD5 ``sign`` and ``X-QW-Signature`` (spec §2.3). Kept
    # in clear because the platform must sign with it; never shown again after creation.
    Column("callback_secret", Text, nullable=True),
    Column("callback_format", Text, nullable=False, server_default="form"),
    # The platform's own Basic credentials at the partner's Query Withdrawal endpoint (spec §3).
    Column("query_username", Text, nullable=True),
    Column("query_password", Text, nullable=True),
    # Currency of ``productPrice`` in the partner's purchase messages (spec §2.2).
    Column("payment_currency", Text, nullable=True),
    # A sandbox partner is a studio's test integration: only it may be offered the demo payment
    # providers (docs/security.md). Production partners can never list them: the check below
    # holds whatever code writes the row.
    Column("sandbox", Integer, nullable=False, server_default="0"),
    # Comma-separated payment methods offered to the partner's players (``wallet``,
    # ``sandbox_card``); configured explicitly per partner.
    Column("payment_methods", Text, nullable=False, server_default="wallet"),
    # 1 when the operator allowed a plain-http callback URL for this partner (shown with a
    # warning in the console); otherwise callback URLs must be https.
    Column("allow_http_callback", Integer, nullable=False, server_default="0"),
    CheckConstraint("callback_format IN ('form', 'json')", name="ck_partners_callback_format"),
    CheckConstraint("sandbox IN (0, 1)", name="ck_partners_sandbox"),
    CheckConstraint(
        "sandbox = 1 OR (',' || payment_methods || ',') NOT LIKE '%,sandbox_card,%'",
        name="ck_partners_sandbox_methods",
    ),
    CheckConstraint("allow_http_callback IN (0, 1)", name="ck_partners_allow_http_callback"),
)

partner_credentials = Table(
    "partner_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("username", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    Index("ix_partner_credentials_username", "username"),
)

players = Table(
    "players",
    metadata,
    Column("id", Text, primary_key=True),
    Column("nickname", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("available_minor", BigInteger, nullable=False),
    Column("held_minor", BigInteger, nullable=False),
    Column("pending_in_minor", BigInteger, nullable=False),
    # Responsible-gaming limit on withdrawals per UTC day; NULL means no limit.
    Column("daily_withdraw_limit_minor", BigInteger, nullable=True),
    Column("limit_day", Integer, nullable=False),
    Column("day_withdrawn_minor", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    # Bumped on sign-out, password change and block: a browser session cookie carries the
    # generation it was issued with and is refused once it differs (docs/security.md).
    Column("web_generation", Integer, nullable=False, server_default="0"),
    CheckConstraint("available_minor >= 0", name="ck_players_available_not_negative"),
    CheckConstraint("held_minor >= 0", name="ck_players_held_not_negative"),
    CheckConstraint("pending_in_minor >= 0", name="ck_players_pending_in_not_negative"),
    CheckConstraint("status IN ('active', 'blocked')", name="ck_players_status"),
    # The players list pages by (created_at_ms, id) (migration 0015).
    Index("ix_players_created_id", "created_at_ms", "id"),
    # The players search pages by (lowered nickname, id) (migration 0019). On PostgreSQL the
    # lowered nickname is COLLATE "C", compared by code point: the migration writes the SQL of
    # each dialect, as reflection shows no collation of an expression (its test checks it).
    Index("ix_players_nickname", text("lower(nickname)"), "id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token", Text, primary_key=True),
    Column("player_id", Text, ForeignKey("players.id"), nullable=False),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("game_code", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("last_seen_at_ms", BigInteger, nullable=False),
    Column("idle_timeout_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    # Revocation reads a player's unrevoked sessions only; the prune finds expired ones by
    # expiry (migration 0012, service/sessions.py).
    Index(
        "ix_sessions_player_live",
        "player_id",
        "expires_at_ms",
        postgresql_where=text("revoked_at_ms IS NULL"),
        sqlite_where=text("revoked_at_ms IS NULL"),
    ),
    Index("ix_sessions_expires", "expires_at_ms"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("qw_transaction_id", PLATFORM_ID, primary_key=True),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("mm_transaction_id", Text, nullable=False),
    Column("player_id", Text, ForeignKey("players.id"), nullable=False),
    # NULL only for a rollback recorded before its original arrived.
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("rollback_reason", Text, nullable=True),
    Column("begin_balance_minor", BigInteger, nullable=True),
    Column("final_balance_minor", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    CheckConstraint("kind IN ('withdrawal', 'deposit')", name="ck_transactions_kind"),
    CheckConstraint(
        "state IN ('pending', 'confirmed', 'rolled_back')", name="ck_transactions_state"
    ),
    CheckConstraint(
        "amount_minor IS NULL OR amount_minor > 0", name="ck_transactions_amount_positive"
    ),
    # No index on (partner_id, mm_transaction_id, kind): ``transaction_keys``' primary key holds
    # that uniqueness and leads to the row by (qw_transaction_id, created_at_ms) (migration
    # 0013 dropped the copy this table had).
    Index("ix_transactions_player", "player_id", "created_at_ms"),
    # The pending rows only (migration 0013): the hold resolver, the gauges, the dashboard, the
    # archive's check and the console's pending filter read the backlog in time order, kind
    # checked in the index. Settled rows, nearly all of them, are not in it.
    Index(
        "ix_transactions_pending",
        "created_at_ms",
        "kind",
        postgresql_where=text("state = 'pending'"),
        sqlite_where=text("state = 'pending'"),
    ),
    # A wallet's pending transactions (migration 0017): the reconcile's hold check probes it
    # per wallet instead of reading the wallet's whole history through ix_transactions_player.
    Index(
        "ix_transactions_pending_player",
        "player_id",
        postgresql_where=text("state = 'pending'"),
        sqlite_where=text("state = 'pending'"),
    ),
    Index("ix_transactions_created", "created_at_ms"),
    # Partner reports (migration 0010): the keyset-paged listing and the daily settlement.
    Index("ix_transactions_partner_created", "partner_id", "created_at_ms", "qw_transaction_id"),
    Index("ix_transactions_partner_updated", "partner_id", "updated_at_ms"),
)

transaction_keys = Table(
    "transaction_keys",
    metadata,
    # One row per Wallet API transaction, written in the same database transaction as its
    # ``transactions`` row and never deleted (spec 1.4: an mmTransactionId is unique forever).
    # Its primary key is the idempotency key: it claims the id (``ON CONFLICT DO NOTHING``)
    # where a partitioned ``transactions`` cannot enforce it, and it leads to the live row by
    # its partition key (``created_at_ms``). While the row is live the answer columns are
    # NULL (nothing stored twice); ``qwallet db archive`` fills them from the final row before
    # it exports and drops the row's month, so a replay or a changed-data call for an archived
    # transaction still gets its original answer or 131/132/133 (docs/operations.md).
    Column("partner_id", Integer, primary_key=True),
    Column("mm_transaction_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("qw_transaction_id", PLATFORM_ID, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    # The final answer of an archived transaction (NULL while its row is live).
    Column("state", Text, nullable=True),
    Column("player_id", Text, nullable=True),
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", Text, nullable=True),
    Column("begin_balance_minor", BigInteger, nullable=True),
    Column("final_balance_minor", BigInteger, nullable=True),
    CheckConstraint(
        "state IS NULL OR state IN ('confirmed', 'rolled_back')",
        name="ck_transaction_keys_state",
    ),
)

adjustments = Table(
    "adjustments",
    metadata,
    Column("id", Text, primary_key=True),
    Column("player_id", Text, ForeignKey("players.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("operator", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("amount_minor <> 0", name="ck_adjustments_amount_not_zero"),
    Index("ix_adjustments_player", "player_id", "created_at_ms"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    # Exactly one of transaction_id / adjustment_id names what the entry belongs to.
    Column("transaction_id", PLATFORM_ID, nullable=True),
    # Text on both: an adjustment's id, or ``archive:YYYY-MM`` for the archive's carry-forward
    # entries (``store.ledger.carry_forward``), which is not a UUID.
    Column("adjustment_id", Text, nullable=True),
    Column("phase", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("player_id", Text, nullable=True),
    Column("partner_id", Integer, nullable=True),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint(
        "(transaction_id IS NULL) <> (adjustment_id IS NULL)", name="ck_ledger_entries_owner"
    ),
    Index("ix_ledger_entries_transaction", "transaction_id"),
    Index("ix_ledger_entries_player", "player_id"),
    # Adjustments are rare: a partial index costs nothing on the game path.
    Index(
        "ix_ledger_entries_adjustment",
        "adjustment_id",
        postgresql_where=text("adjustment_id IS NOT NULL"),
        sqlite_where=text("adjustment_id IS NOT NULL"),
    ),
)

operator_api_keys = Table(
    "operator_api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
)

player_logins = Table(
    "player_logins",
    metadata,
    Column("player_id", Text, ForeignKey("players.id"), primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

operators = Table(
    "operators",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("disabled_at_ms", BigInteger, nullable=True),
    # Bumped on sign-out and password change (see players.web_generation).
    Column("web_generation", Integer, nullable=False, server_default="0"),
)

payment_orders = Table(
    "payment_orders",
    metadata,
    Column("id", Text, primary_key=True),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("player_id", Text, ForeignKey("players.id"), nullable=False),
    Column("cp_order_id", Text, nullable=False),
    # Numbers are kept as the exact text the game sent: the callback signs them as sent.
    Column("server_id", Text, nullable=False),
    Column("product_id", Text, nullable=False),
    Column("product_name", Text, nullable=True),
    Column("product_desc", Text, nullable=True),
    Column("product_number", Integer, nullable=False),
    Column("product_price", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("ext_params", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("method", Text, nullable=True),
    Column("provider_reference", Text, nullable=True),
    # The wallet transaction when paid from the wallet balance.
    Column("qw_transaction_id", PLATFORM_ID, nullable=True),
    Column("delivery_attempts", Integer, nullable=False, server_default="0"),
    Column("next_delivery_at_ms", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("paid_at_ms", BigInteger, nullable=True),
    Column("delivered_at_ms", BigInteger, nullable=True),
    UniqueConstraint("partner_id", "cp_order_id", name="uq_payment_orders_cp_order_id"),
    CheckConstraint(
        "state IN ('created', 'paying', 'paid', 'delivered', 'failed', 'declined')",
        name="ck_payment_orders_state",
    ),
    CheckConstraint("amount_minor > 0", name="ck_payment_orders_amount_positive"),
    CheckConstraint("product_number > 0", name="ck_payment_orders_number_positive"),
    Index("ix_payment_orders_delivery", "state", "next_delivery_at_ms"),
    Index("ix_payment_orders_player", "player_id", "created_at_ms"),
    Index("ix_payment_orders_created", "created_at_ms"),
    Index("ix_payment_orders_state_created", "state", "created_at_ms"),
)

payment_attempts = Table(
    "payment_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Text, ForeignKey("payment_orders.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("response_excerpt", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("outcome", Text, nullable=False),
    CheckConstraint(
        "outcome IN ('delivered', 'retry', 'failed')", name="ck_payment_attempts_outcome"
    ),
    Index("ix_payment_attempts_order", "order_id", "attempt"),
)

hold_resolutions = Table(
    "hold_resolutions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("qw_transaction_id", PLATFORM_ID, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    # What the partner answered (CONFIRMED, ROLLED_BACK, PENDING, UNKNOWN) or NULL for no answer.
    Column("partner_status", Text, nullable=True),
    Column("action", Text, nullable=False),
    Column("detail", Text, nullable=True),
    CheckConstraint(
        "action IN ('confirmed', 'rolled_back', 'retry_later', 'already_final')",
        name="ck_hold_resolutions_action",
    ),
    Index("ix_hold_resolutions_transaction", "qw_transaction_id"),
)

failure_budgets = Table(
    "failure_budgets",
    metadata,
    # Token buckets of failed authentications shared by every server process
    # (``qwallet.service.failure_budgets``): scope says what is guarded (``player_sign_in`` …),
    # key whom (an address, or username and address).
    Column("scope", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_failure_budgets_updated", "updated_at_ms"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("operator", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=True),
    # JSON object with the action's parameters (never secrets).
    Column("details", Text, nullable=True),
    Index("ix_audit_log_at", "at_ms"),
    # The console's audit page filters by one of these and pages by id.
    Index("ix_audit_log_operator", "operator", "id"),
    Index("ix_audit_log_action", "action", "id"),
    Index("ix_audit_log_target", "target", "id"),
)

reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    # One row per run of ``qwallet.service.reconcile.reconcile`` (CLI, console): the servers'
    # /metrics read the newest (qwallet_reconcile_last_ok, qwallet_reconcile_last_run_...).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("ok", Integer, nullable=False),
    # How many differences the run found (0 when ok).
    Column("problems", Integer, nullable=False),
    CheckConstraint("ok IN (0, 1)", name="ck_reconcile_runs_ok"),
)

reconcile_checkpoints = Table(
    "reconcile_checkpoints",
    metadata,
    # A verified reconciliation: every entry with ``id <= position`` is in ``checkpoint_balances``
    # and every wallet it touched matched its cached balance (``qwallet.service.reconcile``).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("position", BigInteger, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("full_run", Integer, nullable=False),
    # How many ledger entries the run read.
    Column("entries", BigInteger, nullable=False),
    CheckConstraint("full_run IN (0, 1)", name="ck_reconcile_checkpoints_full_run"),
    Index("ix_reconcile_checkpoints_position", "position"),
)

checkpoint_balances = Table(
    "checkpoint_balances",
    metadata,
    # One row per account: a wallet account (owner = player id; available, held, pending_in),
    # a partner account (owner ``partner:<id>``) or the operator account (owner ``operator``).
    # ``balance_minor`` is the sum of the account's entries with ``id <= position``, proved by
    # a reconciliation run; rows are updated in place, only for accounts that moved.
    Column("owner", Text, primary_key=True),
    Column("account", Text, primary_key=True),
    Column("currency", Text, primary_key=True),
    Column("balance_minor", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    # The accounts a run moved past a position (migration 0012).
    Index("ix_checkpoint_balances_position", "position", "owner"),
)


reconcile_jobs = Table(
    "reconcile_jobs",
    metadata,
    # The console's background runs (qwallet.service.reconcile_jobs, migration 0012): progress
    # while running (renewed with the lease), the report (JSON) or the error at the end.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mode", Text, nullable=False),
    Column("operator", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("heartbeat_at_ms", BigInteger, nullable=False),
    Column("finished_at_ms", BigInteger, nullable=True),
    Column("done_units", Integer, nullable=False),
    Column("total_units", Integer, nullable=False),
    Column("report", Text, nullable=True),
    Column("error", Text, nullable=True),
    CheckConstraint("mode IN ('since', 'full')", name="ck_reconcile_jobs_mode"),
    CheckConstraint(
        "state IN ('running', 'ok', 'differences', 'failed', 'abandoned')",
        name="ck_reconcile_jobs_state",
    ),
)

reconcile_lease = Table(
    "reconcile_lease",
    metadata,
    # One row: the job that may run now, until ``until_ms`` unless it renews the lease.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("job_id", Integer, nullable=True),
    Column("until_ms", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="ck_reconcile_lease_one_row"),
)

# -- sandbox partners only (qwallet.service.sandbox_faults, migration 0009) -----------------------

sandbox_fault_rules = Table(
    "sandbox_fault_rules",
    metadata,
    # "Answer the next N (``remaining``) / every Kth (``every``) call of ``endpoint`` ('*' for
    # any) with ``action``". ``seen`` counts the calls the rule matched, ``fired`` those it hit;
    # both are advanced by one atomic UPDATE per call, so they hold across server processes.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("error_code", Integer, nullable=True),
    # 1: run the call (it commits), then answer ``error_code`` instead of its answer.
    Column("after_commit", Integer, nullable=False, server_default="0"),
    Column("delay_ms", Integer, nullable=True),
    Column("remaining", Integer, nullable=True),
    Column("every", Integer, nullable=True),
    Column("seen", Integer, nullable=False, server_default="0"),
    Column("fired", Integer, nullable=False, server_default="0"),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("removed_at_ms", BigInteger, nullable=True),
    CheckConstraint(
        "action IN ('error', 'delay', 'drop', 'expire_session')",
        name="ck_sandbox_fault_rules_action",
    ),
    CheckConstraint("(remaining IS NULL) <> (every IS NULL)", name="ck_sandbox_fault_rules_mode"),
    CheckConstraint("remaining IS NULL OR remaining >= 0", name="ck_sandbox_fault_rules_remaining"),
    CheckConstraint("every IS NULL OR every >= 1", name="ck_sandbox_fault_rules_every"),
    CheckConstraint(
        "(action = 'error') = (error_code IS NOT NULL)", name="ck_sandbox_fault_rules_code"
    ),
    CheckConstraint(
        "(action = 'delay') = (delay_ms IS NOT NULL)", name="ck_sandbox_fault_rules_delay"
    ),
    CheckConstraint("after_commit IN (0, 1)", name="ck_sandbox_fault_rules_after_commit"),
    Index("ix_sandbox_fault_rules_partner", "partner_id", "removed_at_ms"),
)

sandbox_faults = Table(
    "sandbox_faults",
    metadata,
    # One row per fault injected into one call, written in the transaction that took it from
    # its rule; ``request_id`` ties it to the call (``sandbox_calls.fault_id`` the other way).
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("rule_id", Integer, ForeignKey("sandbox_fault_rules.id"), nullable=False),
    Column("partner_id", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("mm_transaction_id", Text, nullable=True),
    Column("request_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_sandbox_faults_partner", "partner_id", "at_ms"),
)

sandbox_calls = Table(
    "sandbox_calls",
    metadata,
    # The call log of sandbox partners: one row per Wallet API call, for the protocol report.
    # Production partners never get a row; rows older than the retention are deleted.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("partner_id", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("mm_transaction_id", Text, nullable=True),
    Column("request_id", Text, nullable=False),
    # NULL when the connection was dropped without an answer (a ``drop`` fault).
    Column("http_status", Integer, nullable=True),
    # 0 for a successful answer.
    Column("error_code", Integer, nullable=False),
    Column("fault_id", BigInteger, nullable=True),
    Index("ix_sandbox_calls_partner", "partner_id", "at_ms"),
    Index("ix_sandbox_calls_at", "at_ms"),
)

settlement_days = Table(
    "settlement_days",
    metadata,
    # The settlement of closed UTC days, stored once (``qwallet.service.partner_reports``): per
    # partner, day, currency, kind and terminal state, the count and sum that the report would
    # compute from ``transactions``. Written with INSERT ... ON CONFLICT DO NOTHING, never updated.
    Column("partner_id", Integer, ForeignKey("partners.id"), primary_key=True),
    Column("day_number", Integer, primary_key=True),
    Column("currency", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("state", Text, primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
)

settlement_days_done = Table(
    "settlement_days_done",
    metadata,
    # Which (partner, day) are summarized in ``settlement_days``: a day without any finished
    # transaction has no row there, and must not be computed again on every report.
    Column("partner_id", Integer, ForeignKey("partners.id"), primary_key=True),
    Column("day_number", Integer, primary_key=True),
)
