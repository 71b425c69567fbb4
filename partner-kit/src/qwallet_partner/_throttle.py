"""A budget of failed authentications per client address: token buckets in process memory.

Each address starts with ``burst`` tokens and gets one back every ``refill_s`` seconds. A request
takes a token **before** its credentials are checked and gives it back when they were right, so
verified credentials never spend the budget, and a burst of guesses arriving all at once is
bounded too. With no token left the request is refused without checking anything.

The buckets live in one process: with N processes behind a load balancer an address gets up to
N x ``burst`` failures at once and N per ``refill_s`` after that. The least recently used
buckets are dropped beyond ``max_buckets`` (an attacker rotating addresses gains nothing a fresh
address would not give).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["FailureBudget"]

MAX_BUCKETS = 10_000


class FailureBudget:
    def __init__(
        self,
        burst: int,
        refill_s: float,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or refill_s <= 0 or max_buckets < 1:
            raise ValueError("burst and max_buckets must be >= 1 and refill_s > 0")
        self.burst = float(burst)
        self.refill_s = refill_s
        self._max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()  # apps may be shared by threads (e.g. a sync test client)

    def _refilled(self, key: str, now: float) -> float:
        tokens, updated = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - updated) / self.refill_s)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)

    def take(self, key: str) -> float:
        """Take a token: 0.0 if one was there, else the seconds until one is back."""
        with self._lock:
            now = self._clock()
            tokens = self._refilled(key, now)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now)
                return 0.0
            self._store(key, tokens, now)
            return (1.0 - tokens) * self.refill_s

    def give_back(self, key: str) -> None:
        """The credentials were right: the token taken for them is returned."""
        with self._lock:
            now = self._clock()
            self._store(key, min(self.burst, self._refilled(key, now) + 1.0), now)

    @staticmethod
    def retry_after_s(wait_s: float) -> int:
        """A ``Retry-After`` value: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))

    def __len__(self) -> int:
        return len(self._buckets)
