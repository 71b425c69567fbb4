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

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

MAX_BUCKETS = 100_000


class TokenBuckets:
    """One token bucket per key, refilled lazily on access."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert rate_per_s > 0 and burst >= 1, (rate_per_s, burst)
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, key: Hashable) -> float:
        """Take one token: 0.0 when allowed, else the seconds until a token is available."""
        now = self._clock()
        tokens, updated = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait_s = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait_s = (1.0 - tokens) / self.rate_per_s
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        return wait_s

    def __len__(self) -> int:
        return len(self._buckets)


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


def retry_after_s(wait_s: float) -> int:
    return 0 if wait_s <= 0 else max(1, math.ceil(wait_s))
