"""Configuration, read once from the environment (``QWALLET_*``) into an immutable object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from qwallet.domain.money import Currency, CurrencyRegistry, parse_currency_config

DEFAULT_DATABASE_URL = "sqlite:///qwallet-data/qwallet.db"
DEFAULT_CURRENCIES = "XAG:2,EUR:2,USD:2,GBP:2,JPY:0"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    currencies: tuple[Currency, ...] = field(
        default_factory=lambda: tuple(parse_currency_config(DEFAULT_CURRENCIES))
    )
    session_idle_timeout_s: int = 30 * 60
    session_lifetime_s: int = 24 * 60 * 60
    # Peers whose X-Forwarded-For is believed (addresses or CIDRs of the reverse proxies).
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024
    # A verified Basic credential is remembered this long, so requests cost no password hashing;
    # a revoked credential therefore stops working within this time in every process.
    credential_cache_ttl_s: float = 30.0
    public_base_url: str = "http://127.0.0.1:8000"
    pg_pool_min: int = 4
    pg_pool_max: int = 16
    # asyncpg's prepared-statement cache; 0 behind pgbouncer < 1.21 in transaction mode
    # (docs/scaling.md), at the price of one more round trip per call.
    pg_statement_cache_size: int = 256
    # Signs the browser session cookie; ``serve`` provides a persistent one when unset.
    secret_key: str | None = None
    # Hold resolver (spec §3): withdrawals still pending this long are asked about.
    hold_window_s: int = 49 * 60 * 60
    # How often the resolver runs inside ``serve``; 0 switches the in-process worker off.
    hold_resolver_interval_s: float = 60.0
    # After an answer that is not final, ask again after this, doubling up to the maximum.
    hold_retry_s: int = 5 * 60
    hold_retry_max_s: int = 6 * 60 * 60
    # Timeout of one Query Withdrawal call (connect, read, write, pool).
    hold_query_timeout_s: float = 10.0
    # How often ``serve`` summarizes the closed settlement days not stored yet (every process;
    # idempotent, docs/operations.md "Settlement days"); 0 switches the in-process job off.
    settlement_interval_s: float = 300.0
    # Player payments (docs/payments.md). The worker runs in every server process; 0 turns it off.
    payment_worker_interval_s: float = 1.0
    # Delay before each retry of a failed payment callback (the last one repeats), and the cap.
    payment_retry_schedule_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    payment_max_attempts: int = 8
    payment_callback_timeout_s: float = 10.0
    # How long the sandbox card provider takes to confirm a payment.
    payment_sandbox_delay_s: float = 2.0
    # How long the call log of sandbox partners is kept (the protocol report's window is at most
    # this; docs/operator-guide.md "Sandbox faults").
    sandbox_call_retention_s: int = 7 * 24 * 60 * 60
    # How often the game page refreshes the balance.
    balance_poll_s: float = 3.0
    # Request rate limits, token buckets kept in each server process's memory (so with N
    # processes the effective limit is up to N times these). Burst = bucket size.
    rate_limit_partner_rps: float = 5000.0
    rate_limit_partner_burst: int = 10000
    rate_limit_player_rps: float = 50.0
    rate_limit_player_burst: int = 100
    # Failed authentications per client address (Wallet API): once an address's bucket is empty,
    # requests whose credentials are not already verified get 429 / 104 without running scrypt.
    auth_failure_rps: float = 10.0
    auth_failure_burst: int = 20
    # Failed sign-ins (player pages, admin console), operator API keys: budgets kept in the
    # database, so they hold across ``--workers N`` and machines (qwallet.service.failure_budgets).
    # Per client address the Wallet API's budget above applies; per username *and* address this
    # one: ``sign_in_failure_burst`` tries, one more every ``sign_in_failure_refill_s``. Keyed by
    # address too, so nobody can lock an account out from another address.
    sign_in_failure_burst: int = 5
    sign_in_failure_refill_s: float = 60.0
    # /metrics answers only to these addresses (CIDRs) or to ``Authorization: Bearer <token>``.
    metrics_allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    metrics_token: str | None = None
    # The gauges /metrics reads from the database are refreshed at most this often.
    metrics_cache_s: float = 5.0
    # On SIGTERM a server stops accepting and answers the requests it has read for at most this
    # long before it closes what is left; the workers then stop and give up their leases.
    drain_timeout_s: float = 30.0
    # TEST ONLY: "after_commit" makes the Wallet API process exit abruptly (os._exit) after the
    # store call returned and before the answer is sent, with this probability per call. Used by
    # the reliability suite to prove that a caller's retry gets the replayed answer.
    test_crash_point: str | None = None
    test_crash_probability: float = 0.0

    @property
    def currency_registry(self) -> CurrencyRegistry:
        return CurrencyRegistry(list(self.currencies))

    @property
    def is_embedded_default(self) -> bool:
        return self.database_url == DEFAULT_DATABASE_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            return env.get(f"QWALLET_{name}", default)

        proxies = tuple(p.strip() for p in get("TRUSTED_PROXIES", "").split(",") if p.strip())
        return cls(
            database_url=get("DATABASE_URL", DEFAULT_DATABASE_URL),
            currencies=tuple(parse_currency_config(get("CURRENCIES", DEFAULT_CURRENCIES))),
            session_idle_timeout_s=int(get("SESSION_IDLE_TIMEOUT_S", str(30 * 60))),
            session_lifetime_s=int(get("SESSION_LIFETIME_S", str(24 * 60 * 60))),
            trusted_proxies=proxies,
            max_body_bytes=int(get("MAX_BODY_BYTES", str(64 * 1024))),
            credential_cache_ttl_s=float(get("CREDENTIAL_CACHE_TTL_S", "30")),
            public_base_url=get("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
            pg_pool_min=int(get("PG_POOL_MIN", "4")),
            pg_pool_max=int(get("PG_POOL_MAX", "16")),
            pg_statement_cache_size=_not_negative(
                int(get("PG_STATEMENT_CACHE_SIZE", "256")), "PG_STATEMENT_CACHE_SIZE"
            ),
            secret_key=env.get("QWALLET_SECRET_KEY") or None,
            hold_window_s=int(get("HOLD_WINDOW_S", str(49 * 60 * 60))),
            hold_resolver_interval_s=float(get("HOLD_RESOLVER_INTERVAL_S", "60")),
            hold_retry_s=int(get("HOLD_RETRY_S", str(5 * 60))),
            hold_retry_max_s=int(get("HOLD_RETRY_MAX_S", str(6 * 60 * 60))),
            hold_query_timeout_s=float(get("HOLD_QUERY_TIMEOUT_S", "10")),
            settlement_interval_s=_not_negative_s(
                float(get("SETTLEMENT_INTERVAL_S", "300")), "SETTLEMENT_INTERVAL_S"
            ),
            payment_worker_interval_s=float(get("PAYMENT_WORKER_INTERVAL_S", "1")),
            payment_retry_schedule_s=tuple(
                float(item)
                for item in get("PAYMENT_RETRY_SCHEDULE_S", "5,30,120,600,1800,3600").split(",")
                if item.strip()
            ),
            payment_max_attempts=int(get("PAYMENT_MAX_ATTEMPTS", "8")),
            payment_callback_timeout_s=float(get("PAYMENT_CALLBACK_TIMEOUT_S", "10")),
            payment_sandbox_delay_s=float(get("PAYMENT_SANDBOX_DELAY_S", "2")),
            sandbox_call_retention_s=int(get("SANDBOX_CALL_RETENTION_S", str(7 * 24 * 3600))),
            balance_poll_s=float(get("BALANCE_POLL_S", "3")),
            rate_limit_partner_rps=float(get("RATE_LIMIT_PARTNER_RPS", "5000")),
            rate_limit_partner_burst=int(get("RATE_LIMIT_PARTNER_BURST", "10000")),
            rate_limit_player_rps=float(get("RATE_LIMIT_PLAYER_RPS", "50")),
            rate_limit_player_burst=int(get("RATE_LIMIT_PLAYER_BURST", "100")),
            auth_failure_rps=float(get("AUTH_FAILURE_RPS", "10")),
            auth_failure_burst=int(get("AUTH_FAILURE_BURST", "20")),
            sign_in_failure_burst=int(get("SIGN_IN_FAILURE_BURST", "5")),
            sign_in_failure_refill_s=float(get("SIGN_IN_FAILURE_REFILL_S", "60")),
            metrics_allow=tuple(
                item.strip()
                for item in get("METRICS_ALLOW", "127.0.0.1/32,::1/128").split(",")
                if item.strip()
            ),
            metrics_token=env.get("QWALLET_METRICS_TOKEN") or None,
            metrics_cache_s=float(get("METRICS_CACHE_S", "5")),
            drain_timeout_s=_positive(float(get("DRAIN_TIMEOUT_S", "30")), "DRAIN_TIMEOUT_S"),
            test_crash_point=get("TEST_CRASH_POINT", "") or None,
            test_crash_probability=float(get("TEST_CRASH_PROBABILITY", "1")),
        )


def _positive(value: float, name: str) -> float:
    if not value > 0:  # also refuses NaN
        raise ValueError(f"QWALLET_{name} must be a positive number of seconds, not {value}")
    return value


def _not_negative(value: int, name: str) -> int:
    if value < 0:
        raise ValueError(f"QWALLET_{name} must be 0 or more, not {value}")
    return value


def _not_negative_s(value: float, name: str) -> float:
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"QWALLET_{name} must be 0 (off) or a number of seconds, not {value}")
    return value
