"""One token-bucket rule for every limiter: the Wallet API's request limits and failed-auth
limit (process memory) and the failure budgets shared through the database (sign-in, operator
API) answer the same ``Retry-After`` for the same attempts, on both databases."""

from __future__ import annotations

from qwallet.api.auth import FailedAuthLimiter
from qwallet.api.ratelimit import RateLimiter
from qwallet.domain.token_buckets import TokenBuckets, refill, retry_after_s
from qwallet.service import failure_budgets
from qwallet.service.failure_budgets import Budget
from tests.conftest import Platform

# (milliseconds since the previous attempt) for a burst, a wait, a partial and a full refill.
STEPS_MS = (0, 0, 0, 0, 0, 500, 1_500, 0, 250, 1_750, 2_000, 0, 0, 0, 9_000, 0)


def test_every_in_memory_limiter_is_the_one_bucket() -> None:
    limits = RateLimiter(10.0, 5, 1.0, 2)
    assert isinstance(limits.partners, TokenBuckets) and isinstance(limits.players, TokenBuckets)
    assert isinstance(FailedAuthLimiter(0.5, 2), TokenBuckets)


def test_the_arithmetic() -> None:
    assert refill(0.5, 0.25, 3.0) == 0.75 and refill(2.5, 4.0, 3.0) == 3.0
    assert [retry_after_s(s) for s in (-1.0, 0.0, 0.01, 1.0, 1.2)] == [0, 0, 1, 1, 2]


def test_the_database_budgets_and_the_memory_buckets_agree(platform: Platform) -> None:
    rate_per_s, burst = 0.5, 3
    now_ms = platform.clock.now_ms()
    memory = TokenBuckets(rate_per_s, burst, clock=lambda: now_ms / 1000)
    budget = Budget.per_second(rate_per_s, burst)
    answers = []
    for step_ms in STEPS_MS:
        now_ms += step_ms
        shared = platform.run(
            failure_budgets.take(platform.store, "operator_api", "a:192.0.2.1", budget, now_ms)
        )
        answers.append((shared, retry_after_s(memory.take("a:192.0.2.1"))))
    assert [shared for shared, _ in answers] == [local for _, local in answers]
    assert {shared for shared, _ in answers} == {0, 2}  # passes, and refusals
