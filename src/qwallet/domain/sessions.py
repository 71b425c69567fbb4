"""Session rules (spec §2.1): a token is live until its idle timeout or absolute lifetime ends."""

from __future__ import annotations

from dataclasses import dataclass

SESSION_TOUCH_INTERVAL_MS = 60_000
"""Idle time is tracked to the minute: refreshing ``last_seen`` on every call would turn every
read (getBalance) into a write. An idle session therefore expires up to one minute early."""

MS_PER_DAY = 86_400_000


@dataclass(frozen=True, slots=True)
class SessionRecord:
    token: str
    player_id: str
    partner_id: int
    last_seen_at_ms: int
    idle_timeout_ms: int
    expires_at_ms: int
    revoked_at_ms: int | None

    def is_expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms or now_ms >= self.last_seen_at_ms + self.idle_timeout_ms

    def needs_touch(self, now_ms: int) -> bool:
        return now_ms - self.last_seen_at_ms >= SESSION_TOUCH_INTERVAL_MS


def utc_day(now_ms: int) -> int:
    """Days since the epoch, UTC: the window of the daily withdrawal limit."""
    return now_ms // MS_PER_DAY
