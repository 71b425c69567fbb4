"""The composition root: ``create_app(settings)`` → one ASGI app for the whole platform.

This is the one module that knows every part: it builds the store (in the lifespan, so each
server process has its own connections), the limiters, the Wallet API, the operator API, the
player pages (``qwallet.web``), the admin console (``qwallet.admin``) and the background workers
(the hold resolver, the payment worker, the settlement days' summarizer), and mounts them.
Nothing below imports it (``docs/architecture.md``, "Layers").

``/wallet/*`` goes straight to the raw ASGI Wallet API (the hot path); everything else — operator
API, health, metrics, the OpenAPI document and its page, the player pages and the admin console —
is a small Starlette application behind ``RequestHygiene`` (``qwallet.api.hygiene``: U+0000 in
the path or query → 400, a body above ``max_body_bytes`` → 413, before any handler or form
parser sees it).
"""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwallet import logs
from qwallet.admin import AdminConsole
from qwallet.api import documentation, metrics, studio
from qwallet.api.auth import FailedAuthLimiter, PartnerAuthenticator
from qwallet.api.health import Health
from qwallet.api.hygiene import RequestHygiene
from qwallet.api.operator import OperatorAPI
from qwallet.api.partner_reports import PartnerReports
from qwallet.api.ratelimit import RateLimiter
from qwallet.api.sandbox import SandboxCalls
from qwallet.api.sessions import SessionsAPI
from qwallet.api.studio import StudioAPI
from qwallet.api.wallet import PREFIX, WalletAPI, request_id_from
from qwallet.clock import Clock, SystemClock
from qwallet.monitoring import instruments
from qwallet.payments import DeliveryPolicy, PaymentProvider, PaymentWorker, provider_registry
from qwallet.resolver import HoldResolver
from qwallet.resolver import running as running_resolver
from qwallet.service import archive, holds, settlement_days
from qwallet.settings import Settings
from qwallet.store.factory import Store, open_store
from qwallet.store.sql import SqlDatabase
from qwallet.web.player import PlayerWeb
from qwallet.web.security import SESSION_MAX_AGE_S


class QWalletApp:
    """The ASGI callable. ``store`` may be passed in (tests); otherwise it is opened at startup.

    ``freeze_heap`` (``qwallet serve``, one app per process): after startup, move every object
    alive then (modules, templates, the pool) into the collector's permanent generation. A full
    collection otherwise walks all of them, 25-50 ms during which the worker answers nothing; it
    showed as the p99.9 of the open-loop benchmark (docs/benchmarks.md). Not for an app that
    shares its process (the tests), whose other objects would be frozen with it.
    """

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        store: Store | None = None,
        *,
        freeze_heap: bool = False,
    ):
        self.settings = settings
        self._freeze_heap = freeze_heap
        self.clock = clock or SystemClock()
        self._given_store = store
        self.store: Store | None = None
        self.wallet: WalletAPI | None = None
        self._studio: StudioAPI | None = None
        self._metrics_endpoint = metrics.MetricsEndpoint(settings)
        self._health = Health()
        self._sessions = SessionsAPI(settings, self.clock)
        self.admin = AdminConsole(settings, self.clock, self._resolver_pass)
        secret_key = settings.secret_key or secrets.token_urlsafe(48)
        self.player_web = PlayerWeb(
            settings, self.clock, provider_registry(settings.payment_sandbox_delay_s)
        )
        self.partner_reports = PartnerReports(settings)
        self.web = Starlette(
            routes=self._routes(),
            lifespan=self._lifespan,
            middleware=[
                Middleware(
                    SessionMiddleware,
                    secret_key=secret_key,
                    session_cookie="qwallet_session",
                    max_age=SESSION_MAX_AGE_S,
                    same_site="lax",
                    https_only=settings.public_base_url.startswith("https://"),
                )
            ],
        )
        self.pages: ASGIApp = RequestHygiene(self.web, settings.max_body_bytes)

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        store = self._given_store or await open_store(self.settings)
        self.store = store
        authenticator = PartnerAuthenticator(store, self.settings.credential_cache_ttl_s)
        sandbox = SandboxCalls(store, self.clock, self.settings.sandbox_call_retention_s)
        limits, auth_failures = wallet_limiters(self.settings)
        self.wallet = WalletAPI(
            store, self.settings, self.clock, authenticator, limits, auth_failures, sandbox
        )
        # One failed-authentication budget per address for /wallet/* and /partner/*.
        self.partner_reports.start(store, authenticator, auth_failures)
        self._metrics_endpoint.start(store)
        self._health.start(store)
        operator = OperatorAPI(store, self.settings, self.clock)
        self._sessions.start(store, operator)
        self._studio = StudioAPI(operator, store, self.clock, self.settings.max_body_bytes)
        self.admin.store = store
        await self.player_web.start(store)
        worker = payment_worker(store, self.settings, self.clock, self.player_web.providers)
        if worker is not None:
            worker.start()
            self.player_web.worker = worker
        if self.settings.settlement_interval_s > 0:
            instruments.settlement_started(self.settings.settlement_interval_s)
        try:
            async with (
                running_resolver(store, self.settings, self.clock),
                self.admin.sampling(),
                archive.partition_keeper(store, self.clock.now_ms),
                # Closed settlement days, summarized here so that no report writes
                # (every process; a day is one idempotent transaction, see the module).
                settlement_days.running(
                    store,
                    self.clock.now_ms,
                    self.settings.settlement_interval_s,
                    on_pass=instruments.settlement_pass,
                ),
            ):
                if self._freeze_heap:
                    gc.collect()
                    gc.freeze()
                yield
        finally:
            await self.player_web.stop()
            if worker is not None:
                await worker.stop()
            if self._given_store is None:
                await store.close()

    async def _resolver_pass(self, store: Store, operator: str) -> dict[str, int]:
        """One pass of the hold resolver on demand (the console's button), audited as
        ``operator``; what it did, by action."""
        async with HoldResolver(store, self.settings, self.clock) as resolver:
            _outcomes, summary = await holds.run_resolver_pass(
                store, resolver.run_once, operator=operator, now_ms=self.clock.now_ms
            )
        return summary

    def _routes(self) -> list[BaseRoute]:
        return [
            *self.player_web.routes(),
            *self._health.routes(),
            *self._metrics_endpoint.routes(self.clock),
            *documentation.routes(),
            *self._sessions.routes(),
            *self.partner_reports.routes(),
            # Fault rules and reports: the StudioAPI is built when the store opens.
            *studio.routes(lambda: self._studio),
            Mount("/admin", routes=self.admin.routes()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX) and self.wallet:
            await self.wallet(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.pages(scope, receive, send)
            return
        request_id = request_id_from(dict(scope["headers"]).get(b"x-request-id"))

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.pages(scope, receive, send_with_request_id)


def wallet_limiters(settings: Settings) -> tuple[RateLimiter, FailedAuthLimiter]:
    """The Wallet API's per-process limiters: calls per partner and per player (104), failed
    authentications per client address (``qwallet.api.ratelimit``, ``qwallet.api.auth``)."""
    return (
        RateLimiter(
            settings.rate_limit_partner_rps,
            settings.rate_limit_partner_burst,
            settings.rate_limit_player_rps,
            settings.rate_limit_player_burst,
        ),
        FailedAuthLimiter(settings.auth_failure_rps, settings.auth_failure_burst),
    )


def payment_worker(
    db: SqlDatabase, settings: Settings, clock: Clock, providers: dict[str, PaymentProvider]
) -> PaymentWorker | None:
    """The payment worker (provider events, callback delivery), unless switched off
    (``QWALLET_PAYMENT_WORKER_INTERVAL_S=0``)."""
    if settings.payment_worker_interval_s <= 0:
        return None
    return PaymentWorker(
        db,
        clock,
        providers,
        currencies=settings.currency_registry,
        policy=DeliveryPolicy(
            schedule_s=settings.payment_retry_schedule_s,
            max_attempts=settings.payment_max_attempts,
            timeout_s=settings.payment_callback_timeout_s,
            lease_s=max(60.0, 2 * settings.payment_callback_timeout_s),
        ),
        interval_s=settings.payment_worker_interval_s,
    )


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    freeze_heap: bool = False,
) -> QWalletApp:
    return QWalletApp(settings or Settings.from_env(), clock, store, freeze_heap=freeze_heap)


def create_app_from_env() -> QWalletApp:
    """The factory ``uvicorn`` calls in each worker process (``serve --workers N``).

    A worker is a fresh process: it sets up its logs as ``serve`` did (``QWALLET_LOG_FORMAT``,
    ``QWALLET_LOG_LEVEL``, from the environment ``serve`` gives it).
    """
    logs.configure(
        os.environ.get(logs.LEVEL_ENV_VAR, "info"),
        os.environ.get(logs.ENV_VAR, logs.LogFormat.AUTO),
    )
    return create_app(Settings.from_env(), freeze_heap=True)


__all__ = [
    "QWalletApp",
    "create_app",
    "create_app_from_env",
    "payment_worker",
    "wallet_limiters",
]
