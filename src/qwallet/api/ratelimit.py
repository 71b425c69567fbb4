"""Request rate limits for the Wallet API: token buckets per partner and per session token.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; each request takes
one. An empty bucket answers HTTP 429 with code 104 and ``Retry-After`` (whole seconds until a
token is back). The partner limit is checked right after authentication, before the body is read;
the player limit (keyed by the session token) right after the body is decoded.

Buckets live in the memory of each server process: with ``--workers N`` (or N machines) a caller
can get up to N times the configured rate. They are a guard against a runaway or hostile client,
not an accounting of quotas. The number of buckets is bounded (least recently used first out), so
a flood of made-up tokens cannot exhaust memory; at worst it resets other tokens' buckets, and the
partner limit still holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from qwallet.domain.token_buckets import TokenBuckets, retry_after_s


class RateLimiter:
    """The Wallet API's two limits: per partner and per player (session token)."""

    def __init__(
        self,
        partner_rps: float,
        partner_burst: int,
        player_rps: float,
        player_burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partners = TokenBuckets(partner_rps, partner_burst, clock=clock)
        self.players = TokenBuckets(player_rps, player_burst, clock=clock)

    def partner(self, partner_id: int) -> int:
        """0 when the partner may proceed, else the ``Retry-After`` in whole seconds (≥ 1)."""
        return retry_after_s(self.partners.take(partner_id))

    def player(self, partner_id: int, token: str) -> int:
        """0 when the session token may proceed, else the ``Retry-After`` in whole seconds."""
        return retry_after_s(self.players.take((partner_id, token)))


__all__ = ["RateLimiter", "TokenBuckets", "retry_after_s"]
