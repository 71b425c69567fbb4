"""Token buckets: the one implementation behind every limiter of the platform.

A bucket holds up to ``burst`` tokens and regains them continuously; an attempt takes one, and
an empty bucket says how long until a token is back, which callers turn into ``Retry-After``
(whole seconds, at least 1: :func:`retry_after_s`).

- :class:`TokenBuckets` keeps one bucket per key in process memory, bounded (least recently
  used first out, so a flood of made-up keys cannot exhaust memory). The Wallet API's request
  limits (``qwallet.api.ratelimit``) and its failed-authentication limit per address
  (``qwallet.api.auth`` ``FailedAuthLimiter``) are instances of it.
- The failure budgets shared by every process (``qwallet.service.failure_budgets``: sign-in,
  operator API) keep their buckets in the database instead, and use :func:`refill` and
  :func:`retry_after_s` from here for the arithmetic.

Pure: time comes from the injected ``clock`` (seconds, monotonic by default).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

MAX_BUCKETS = 100_000


def refill(tokens: float, gained: float, burst: float) -> float:
    """The bucket's tokens after ``gained`` more, never above ``burst``."""
    return min(burst, tokens + gained)


def retry_after_s(wait_s: float) -> int:
    """``Retry-After`` for a wait: 0 when none, else whole seconds rounded up (≥ 1)."""
    return 0 if wait_s <= 0 else max(1, math.ceil(wait_s))


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

    def _refilled(self, key: Hashable) -> tuple[float, float]:
        now = self._clock()
        tokens, updated = self._buckets.get(key, (self.burst, now))
        return refill(tokens, (now - updated) * self.rate_per_s, self.burst), now

    def _store(self, key: Hashable, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)

    def take(self, key: Hashable) -> float:
        """Take one token: 0.0 when allowed, else the seconds until a token is available."""
        tokens, now = self._refilled(key)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / self.rate_per_s

    def refund(self, key: Hashable) -> None:
        """Give back the token of an attempt that turned out not to count."""
        tokens, now = self._refilled(key)
        self._store(key, refill(tokens, 1.0, self.burst), now)

    def __len__(self) -> int:
        return len(self._buckets)
