"""Send the vectors to the studio, one at a time and in order, and judge each answer.

One vector at a time: the replay must follow the valid callback, and a studio under test should
see nothing it would not see from the platform (which never sends a burst of forgeries). Each
request has a timeout, follows no redirect (the platform does not either) and keeps at most
``MAX_ANSWER_BYTES`` of the answer; a transport failure is a miss, with its reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import httpx

from qwallet.clock import Clock
from qwallet.studio_check.target import Target
from qwallet.studio_check.vectors import Vector, build_vectors

__all__ = ["CheckRefused", "CheckResult", "RowResult", "run_check"]

MAX_ANSWER_BYTES = 64 * 1024
EXCERPT_CHARS = 200
TIMEOUT_S = 10.0
TOTAL_BUDGET_S = 60.0
"""A hanging studio cannot hold the console's request for 12 x 10 s: rows not sent within this
budget are misses."""

Outcome = Literal["pass", "miss", "skip"]


class CheckRefused(Exception):
    """The check will not run against this partner (the message says why and what to do)."""


@dataclass(frozen=True, slots=True)
class RowResult:
    key: str
    title: str
    must: str
    outcome: Outcome
    answered: str
    elapsed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    partner: str
    sandbox: bool
    query_only: bool
    started_at_ms: int
    rows: list[RowResult] = field(default_factory=list)

    @property
    def misses(self) -> list[RowResult]:
        return [row for row in self.rows if row.outcome == "miss"]

    @property
    def skips(self) -> list[RowResult]:
        return [row for row in self.rows if row.outcome == "skip"]

    def passed(self, *, strict: bool = False) -> bool:
        return not self.misses and not (strict and self.skips)

    def as_json(self) -> dict[str, object]:
        return {
            "partner": self.partner,
            "sandbox": self.sandbox,
            "queryOnly": self.query_only,
            "startedAtMs": self.started_at_ms,
            "passed": self.passed(),
            "rows": [
                {
                    "key": r.key,
                    "title": r.title,
                    "must": r.must,
                    "outcome": r.outcome,
                    "answered": r.answered,
                    "elapsedMs": r.elapsed_ms,
                }
                for r in self.rows
            ],
        }


def check_allowed(target: Target, *, query_only: bool) -> None:
    """Refuse a production partner unless only the read-only Query rows are asked for.

    The callback rows send forged and re-sent payment callbacks: a correct studio refuses or
    ignores them, a broken one may grant items. That is what a sandbox is for; against a
    production studio only Query Withdrawal (which, by contract, only reads) is sent.
    """
    if not target.sandbox and not query_only:
        raise CheckRefused(
            f"partner {target.partner!r} is not a sandbox partner: the check sends forged and"
            " repeated payment callbacks, which a broken production studio could act on."
            " Run it against the studio's sandbox partner, or pass --query-only to send only"
            " the read-only Query Withdrawal rows."
        )


async def run_check(
    target: Target,
    clock: Clock,
    *,
    query_only: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CheckResult:
    check_allowed(target, query_only=query_only)
    started_at_ms = clock.now_ms()
    vectors = build_vectors(target, started_at_ms, query_only=query_only)
    result = CheckResult(target.partner, target.sandbox, query_only, started_at_ms)
    async with httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(TIMEOUT_S), follow_redirects=False
    ) as client:
        deadline = time.monotonic() + TOTAL_BUDGET_S
        for vector in vectors:
            if time.monotonic() >= deadline and vector.request is not None:
                answered = f"not sent: the check's {TOTAL_BUDGET_S:g} s budget ran out"
                result.rows.append(
                    RowResult(vector.key, vector.title, vector.must, "miss", answered)
                )
                continue
            result.rows.append(await _run_one(client, vector))
    return result


async def _run_one(client: httpx.AsyncClient, vector: Vector) -> RowResult:
    if vector.request is None:
        reason = vector.skip_reason or "no data"
        return RowResult(vector.key, vector.title, vector.must, "skip", f"not sent: {reason}")
    request = vector.request
    started = time.monotonic()
    try:
        async with client.stream(
            "POST", request.url, content=request.body, headers=request.headers, auth=request.auth
        ) as response:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_ANSWER_BYTES:
                    body = body[:MAX_ANSWER_BYTES]
                    break
            status = response.status_code
    except httpx.HTTPError as error:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        answered = f"no answer: {type(error).__name__}: {error}"[:EXCERPT_CHARS]
        return RowResult(vector.key, vector.title, vector.must, "miss", answered, elapsed_ms)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    answered = f"{status} {text}"[:EXCERPT_CHARS]
    outcome: Outcome = "pass" if vector.judge(status, body) else "miss"
    return RowResult(vector.key, vector.title, vector.must, outcome, answered, elapsed_ms)
