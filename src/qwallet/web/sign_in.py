"""Throttling of failed sign-ins (player pages and admin console), shared by every server process.

Each attempt takes a token from two database budgets (``qwallet.service.failure_budgets``)
*before* the password hash runs: one per client address (the Wallet API's budget,
``auth_failure_rps`` / ``auth_failure_burst``) and one per username **and** address
(``sign_in_failure_burst`` tries, one more every ``sign_in_failure_refill_s``). A right password
gives both back, so only failures count. An empty budget answers 429 with ``Retry-After`` and
no hashing at all.

Keying the username budget by address too means a guesser elsewhere on the network spends only
its own budget: the account's owner, from their own address, still signs in. The per-address
budget bounds the scrypt work one address can cause across all usernames.

The client address follows the Wallet API's trusted-proxy rule (``ClientAddressResolver``):
``X-Forwarded-For`` counts only when the TCP peer is one of ``settings.trusted_proxies``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from qwallet.api.auth import ClientAddressResolver
from qwallet.clock import Clock
from qwallet.service import failure_budgets
from qwallet.service.failure_budgets import Budget
from qwallet.settings import Settings
from qwallet.store.sql import SqlDatabase

PLAYER_SCOPE = "player_sign_in"
ADMIN_SCOPE = "admin_sign_in"
MAX_USERNAME_KEY_CHARS = 64


@dataclass(frozen=True, slots=True)
class Attempt:
    """The budgets one sign-in attempt took; ``retry_after_s`` > 0 when it was refused."""

    keys: list[tuple[str, Budget]]
    retry_after_s: int


class SignInThrottle:
    def __init__(self, settings: Settings, clock: Clock, scope: str) -> None:
        self.scope = scope
        self.clock = clock
        self._addresses = ClientAddressResolver(settings.trusted_proxies)
        self._per_address = Budget.per_second(
            settings.auth_failure_rps, settings.auth_failure_burst
        )
        self._per_username = Budget(
            settings.sign_in_failure_burst, settings.sign_in_failure_refill_s
        )

    def client_address(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        # Several X-Forwarded-For headers are one list (RFC 9110 §5.3), in order.
        forwarded = b",".join(
            value for name, value in request.scope["headers"] if name == b"x-forwarded-for"
        )
        address = self._addresses.resolve(peer, forwarded or None)
        return str(address) if address is not None else "-"

    async def attempt(self, db: SqlDatabase, request: Request, username: str) -> Attempt:
        """Take a token from both budgets before any hashing (all or nothing)."""
        address = self.client_address(request)
        keys = [
            (f"a:{address}", self._per_address),
            (f"u:{username[:MAX_USERNAME_KEY_CHARS]}|a:{address}", self._per_username),
        ]
        wait_s = await failure_budgets.take_all(db, self.scope, keys, self.clock.now_ms())
        return Attempt(keys, wait_s)

    async def succeeded(self, db: SqlDatabase, attempt: Attempt) -> None:
        """The password was right: the attempt costs nothing."""
        await failure_budgets.give_back_all(db, self.scope, attempt.keys)


__all__ = ["ADMIN_SCOPE", "PLAYER_SCOPE", "Attempt", "SignInThrottle"]
