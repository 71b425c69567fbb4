"""The clock the kit reads, injectable so tests can run 48 hours of retries in milliseconds.

Times are Unix seconds (``float``) because they are stored and must mean the same thing to the
next process after a restart; a monotonic clock would not.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, duration_s: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(duration_s)


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, duration_s: float) -> None:
        assert duration_s >= 0, "time does not go backwards"
        self._now += duration_s

    def set(self, timestamp: float) -> None:
        assert timestamp >= self._now, "time does not go backwards"
        self._now = timestamp

    async def sleep(self, duration_s: float) -> None:
        self.advance(max(0.0, duration_s))
        # Still yield, so a loop that sleeps lets other tasks run as it would for real.
        await asyncio.sleep(0)
