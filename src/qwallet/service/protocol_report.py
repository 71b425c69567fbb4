"""The protocol report of one partner for a time window, from the platform's own records.

Sources: the partner's withdrawals (``transactions``: their states), its call log and the faults
injected into it (``sandbox_calls``, ``sandbox_faults`` — sandbox partners only, see
``qwallet.service.sandbox_faults``). Each rule of the documentation (spec §1.4) gets a verdict:

- ``withdraw-once`` [doc]: a withdraw is sent once per ``mmTransactionId``; a second withdraw
  call with the same id fails the rule, whatever it was answered.
- ``same-data`` [ours]: an id is never reused with different data; every answer 131 fails it.
- ``rollback-after-failed-withdraw`` [doc]: a withdraw that failed (an error answer, or no
  answer: the connection dropped) is followed by a ``rollbackWithdrawal`` of its id. Answers
  that say the id is taken by another call (131, 132, 134) are not failures of this withdrawal.
- ``confirm-or-rollback`` [doc]: every withdrawal is confirmed or rolled back within the retry
  window (48 h): one still pending after it was never finished; one finished after it came late.
- ``retry-schedule`` [doc]: after a failed confirm or rollback the same call comes again on
  the documented schedule (``RETRY_SCHEDULE``): retry *i* is expected at offset *o_i* from the
  first attempt, give or take half the gap before it (at least 1 s early, 5 s late); a retry
  outside that, or none after a failure once its time has passed, fails the rule.
- ``fault-reactions``: how the studio reacted to each injected fault, per the rules above (a
  failed withdraw → rollback; a failed confirm or rollback → the same call again until it
  succeeds); verifySession and getBalance faults have no expectation and are only listed.

The calls considered are those logged in the window; pending withdrawals are counted from the
transactions created in it, so a window should start before the first call of a test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qwallet.service import sandbox_faults
from qwallet.store.sql import Row, SqlDatabase


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """The documented retry schedule of confirm and rollback (spec §1.4).

    A copy of the partner kit's ``RetrySchedule`` defaults (the platform does not import the
    kit); ``tests/integration/test_protocol_report.py`` proves the two equal."""

    delays_s: tuple[float, ...] = (5, 10, 20, 40, 120, 300, 600, 1800)
    then_every_s: float = 3600
    window_s: float = 48 * 3600

    def offsets_s(self) -> Iterator[float]:
        """Every attempt's time since the first one: 0, 5, 15, 35, …, up to the window."""
        offset = 0.0
        delays = iter(self.delays_s)
        while offset <= self.window_s:
            yield offset
            offset += next(delays, self.then_every_s)

    def offset_s(self, attempt: int) -> float | None:
        """The scheduled offset of attempt ``attempt`` (0 is the first), None past the window."""
        for index, offset in enumerate(self.offsets_s()):
            if index == attempt:
                return offset
        return None


RETRY_SCHEDULE = RetrySchedule()
EARLY_SLACK_MIN_S = 1.0
LATE_SLACK_MIN_S = 5.0
MAX_EXAMPLES = 20
MAX_WITHDRAWALS = 50_000
"""The newest withdrawals of the window a report examines, at most (see :func:`report`)."""
NOT_THIS_WITHDRAWALS_FAILURE = {131, 132, 134}
"""Answers to a withdraw that mean its id belongs to another call: no rollback is owed for it."""

DEPOSIT_ENDPOINTS = frozenset({"deposit", "confirmDeposit", "rollbackDeposit"})

RULES = (
    ("withdraw-once", "A withdraw is sent once per mmTransactionId."),
    ("same-data", "An mmTransactionId is never reused with different data (131)."),
    (
        "rollback-after-failed-withdraw",
        "A withdraw that failed (error, timeout, no answer) is rolled back.",
    ),
    (
        "confirm-or-rollback",
        "Every withdrawal is confirmed or rolled back within the 48 h retry window.",
    ),
    (
        "retry-schedule",
        "A failed confirm or rollback is retried on the documented schedule until it succeeds.",
    ),
    ("fault-reactions", "Every injected fault met the reaction the documentation asks for."),
)


@dataclass(slots=True)
class _Verdict:
    failures: list[dict[str, Any]] = field(default_factory=list)
    checked: int = 0

    def fail(self, **example: Any) -> None:
        self.failures.append(example)


@dataclass(frozen=True, slots=True)
class _Withdrawals:
    count: int
    confirmed: int
    rolled_back: int
    pending: int
    unfinished: int
    late: int
    oldest_ms: int
    examples: list[dict[str, Any]]


_NEWEST = (
    "SELECT mm_transaction_id, state, created_at_ms, updated_at_ms FROM transactions"
    " WHERE partner_id = $1 AND kind = 'withdrawal'"
    " AND created_at_ms >= $2 AND created_at_ms < $3 ORDER BY created_at_ms DESC LIMIT $4"
)
# Pending past the retry window ($5 = now - window), or finished later than the window ($6).
_FAILING = (
    "(state = 'pending' AND created_at_ms < $5)"
    " OR (state <> 'pending' AND updated_at_ms - created_at_ms > $6)"
)


async def _withdrawals(
    db: SqlDatabase,
    partner_id: int,
    since_ms: int,
    until_ms: int,
    now_ms: int,
    schedule: RetrySchedule,
    cap: int,
) -> _Withdrawals:
    """The counts of the newest ``cap`` withdrawals of the window, and the first failures.

    Counted in SQL over one bounded index range: the rows never travel to Python."""
    window_ms = int(schedule.window_s * 1000)
    args = (partner_id, since_ms, until_ms, cap, now_ms - window_ms, window_ms)
    async with db.transaction() as tx:
        counts = await tx.fetchrow(
            "SELECT count(*) AS n,"
            " coalesce(sum(CASE WHEN state = 'confirmed' THEN 1 ELSE 0 END), 0) AS confirmed,"
            " coalesce(sum(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS pending,"
            " coalesce(sum(CASE WHEN state = 'pending' AND created_at_ms < $5"
            " THEN 1 ELSE 0 END), 0) AS unfinished,"
            " coalesce(sum(CASE WHEN state <> 'pending' AND updated_at_ms - created_at_ms > $6"
            " THEN 1 ELSE 0 END), 0) AS late,"
            f" coalesce(min(created_at_ms), 0) AS oldest FROM ({_NEWEST}) AS w",
            *args,
        )
        rows = await tx.fetch(
            f"SELECT * FROM ({_NEWEST}) AS w WHERE {_FAILING}"
            f" ORDER BY created_at_ms LIMIT {MAX_EXAMPLES}",
            *args,
        )
    assert counts is not None
    examples: list[dict[str, Any]] = []
    for row in rows:
        state = str(row["state"])
        if state == "pending":
            examples.append(
                {
                    "mmTransactionId": row["mm_transaction_id"],
                    "problem": "never confirmed or rolled back",
                }
            )
        else:
            age_ms = int(row["updated_at_ms"]) - int(row["created_at_ms"])
            examples.append(
                {
                    "mmTransactionId": row["mm_transaction_id"],
                    "problem": f"{state.replace('_', ' ')} {age_ms // 1000} s after the withdraw",
                }
            )
    count, confirmed, pending = int(counts["n"]), int(counts["confirmed"]), int(counts["pending"])
    return _Withdrawals(
        count=count,
        confirmed=confirmed,
        rolled_back=count - confirmed - pending,
        pending=pending,
        unfinished=int(counts["unfinished"]),
        late=int(counts["late"]),
        oldest_ms=int(counts["oldest"]),
        examples=examples,
    )


def _ok(call: Row) -> bool:
    return call["http_status"] == 200 and int(call["error_code"]) == 0


def _failed(call: Row) -> bool:
    return not _ok(call)


def _answer(call: Row) -> str:
    if call["http_status"] is None:
        return "no answer (connection dropped)"
    if _ok(call):
        return "success"
    return f"error {call['error_code']} (HTTP {call['http_status']})"


def _retry_verdicts(
    attempts: list[Row], now_ms: int, schedule: RetrySchedule
) -> tuple[list[str], bool]:
    """Problems with the retries of one confirm or rollback, and whether it ever succeeded.

    Only attempts up to the first success count: repeating a confirm after its success is a
    harmless replay, not a retry."""
    problems: list[str] = []
    first_ms = int(attempts[0]["at_ms"])
    previous_offset = 0.0
    for index, attempt in enumerate(attempts):
        offset = (int(attempt["at_ms"]) - first_ms) / 1000
        if index:
            expected = schedule.offset_s(index)
            if expected is None:
                problems.append(f"attempt {index + 1} at +{offset:.0f} s is past the window")
            else:
                gap = expected - previous_offset
                if offset < expected - max(EARLY_SLACK_MIN_S, gap / 2):
                    problems.append(
                        f"attempt {index + 1} at +{offset:.1f} s, early (due at +{expected:.0f} s)"
                    )
                elif offset > expected + max(LATE_SLACK_MIN_S, gap / 2):
                    problems.append(
                        f"attempt {index + 1} at +{offset:.1f} s, late (due at +{expected:.0f} s)"
                    )
            previous_offset = expected if expected is not None else offset
        if _ok(attempt):
            return problems, True
    expected = schedule.offset_s(len(attempts))
    waited_s = (now_ms - first_ms) / 1000
    if expected is None or waited_s > expected + max(LATE_SLACK_MIN_S, expected / 2):
        problems.append(
            f"no retry after the failed attempt {len(attempts)} (due at +{expected or 0:.0f} s)"
        )
    return problems, False


async def report(
    db: SqlDatabase,
    partner: str,
    since_ms: int,
    until_ms: int,
    now_ms: int,
    *,
    schedule: RetrySchedule = RETRY_SCHEDULE,
    cap: int = MAX_WITHDRAWALS,
) -> dict[str, Any]:
    """The report as one JSON-ready object (camelCase keys).

    At most ``cap`` withdrawals are examined, the newest of the window: a production partner's
    day can hold millions, and neither the console nor an operator key may make the server read
    an unbounded range. A capped report says so (``coverage``: ``capped``, ``coveredSinceMs``)."""
    partner_id, sandbox = await sandbox_faults.partner_id_of(db, partner)
    calls = await sandbox_faults.calls(db, partner_id, since_ms, until_ms)
    injected = await sandbox_faults.faults(db, partner_id, since_ms, until_ms)
    withdrawals = await _withdrawals(db, partner_id, since_ms, until_ms, now_ms, schedule, cap)
    by_id: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for call in calls:
        if call["mm_transaction_id"] is not None:
            by_id[(str(call["endpoint"]), str(call["mm_transaction_id"]))].append(call)

    verdicts = {name: _Verdict() for name, _ in RULES}

    # withdraw-once
    withdraw_ids = sorted({mm for (endpoint, mm) in by_id if endpoint == "withdraw"})
    verdicts["withdraw-once"].checked = len(withdraw_ids)
    for mm in withdraw_ids:
        sent = by_id[("withdraw", mm)]
        if len(sent) > 1:
            verdicts["withdraw-once"].fail(mmTransactionId=mm, withdrawCalls=len(sent))

    # same-data
    verdicts["same-data"].checked = len(calls)
    for call in calls:
        if int(call["error_code"]) == 131:
            verdicts["same-data"].fail(
                mmTransactionId=call["mm_transaction_id"],
                endpoint=call["endpoint"],
                atMs=call["at_ms"],
            )

    # rollback-after-failed-withdraw
    failed_withdraws = [
        (mm, call)
        for mm in withdraw_ids
        for call in by_id[("withdraw", mm)][:1]
        if _failed(call) and int(call["error_code"]) not in NOT_THIS_WITHDRAWALS_FAILURE
    ]
    verdicts["rollback-after-failed-withdraw"].checked = len(failed_withdraws)
    for mm, call in failed_withdraws:
        rollbacks = [
            c for c in by_id.get(("rollbackWithdrawal", mm), []) if c["at_ms"] >= call["at_ms"]
        ]
        if not rollbacks:
            verdicts["rollback-after-failed-withdraw"].fail(
                mmTransactionId=mm, withdrawAnswer=_answer(call), atMs=call["at_ms"]
            )

    # confirm-or-rollback: from the platform's transaction records, counted by the database
    summary = {
        "withdrawals": withdrawals.count,
        "confirmed": withdrawals.confirmed,
        "rolledBack": withdrawals.rolled_back,
        "pending": withdrawals.pending,
    }
    verdicts["confirm-or-rollback"].checked = withdrawals.count
    verdicts["confirm-or-rollback"].failures.extend(withdrawals.examples)
    failures_beyond_examples = withdrawals.unfinished + withdrawals.late - len(withdrawals.examples)

    # retry-schedule
    for endpoint in ("confirmWithdrawal", "rollbackWithdrawal"):
        for (called, mm), attempts in sorted(by_id.items()):
            if called != endpoint:
                continue
            verdicts["retry-schedule"].checked += 1
            problems, _succeeded = _retry_verdicts(attempts, now_ms, schedule)
            for problem in problems:
                verdicts["retry-schedule"].fail(
                    mmTransactionId=mm, endpoint=endpoint, problem=problem
                )

    # fault-reactions
    calls_by_request = {str(c["request_id"]): c for c in calls}
    reactions: list[dict[str, Any]] = []
    for fault in injected:
        hit = calls_by_request.get(str(fault["request_id"]))
        reaction = _reaction(fault, hit, by_id)
        reactions.append(reaction)
        if reaction["verdict"] == "fail":
            verdicts["fault-reactions"].fail(
                faultId=fault["id"],
                mmTransactionId=fault["mm_transaction_id"],
                problem=reaction["reaction"],
            )
    verdicts["fault-reactions"].checked = sum(1 for r in reactions if r["verdict"] != "info")

    rules = []
    for name, text in RULES:
        verdict = verdicts[name]
        rules.append(
            {
                "rule": name,
                "text": text,
                "verdict": "fail" if verdict.failures else "pass",
                "checked": verdict.checked,
                "failures": len(verdict.failures)
                + (failures_beyond_examples if name == "confirm-or-rollback" else 0),
                "examples": verdict.failures[:MAX_EXAMPLES],
            }
        )
    return {
        "partner": partner,
        "sandbox": sandbox,
        "sinceMs": since_ms,
        "untilMs": until_ms,
        "generatedAtMs": now_ms,
        "calls": len(calls),
        "summary": {
            **summary,
            "late": withdrawals.late,
            "faultsInjected": len(injected),
        },
        "coverage": {
            "capped": withdrawals.count >= cap,
            "withdrawalsCap": cap,
            "coveredSinceMs": withdrawals.oldest_ms if withdrawals.count >= cap else since_ms,
        },
        "verdict": "fail" if any(r["verdict"] == "fail" for r in rules) else "pass",
        "rules": rules,
        "faults": reactions,
    }


def _reaction(
    fault: Row, hit: Row | None, by_id: dict[tuple[str, str], list[Row]]
) -> dict[str, Any]:
    """What the documentation expects after ``fault`` and what the studio did."""
    endpoint, mm = str(fault["endpoint"]), fault["mm_transaction_id"]
    base = {
        "faultId": fault["id"],
        "ruleId": fault["rule_id"],
        "atMs": fault["at_ms"],
        "endpoint": endpoint,
        "mmTransactionId": mm,
        "fault": fault["detail"],
        "answer": _answer(hit) if hit is not None else "not logged",
    }
    if mm is None or endpoint in ("verifySession", "getBalance"):
        return {**base, "expected": "nothing in particular", "reaction": "—", "verdict": "info"}
    # Calls after the one the fault hit: by time, then by log order (equal times are common
    # with a coarse clock; the log row of a call is written when it is answered).
    after = (int(hit["at_ms"]), int(hit["id"])) if hit is not None else (int(fault["at_ms"]), 0)

    def later(name: str) -> list[Row]:
        return [
            c for c in by_id.get((name, str(mm)), []) if (int(c["at_ms"]), int(c["id"])) > after
        ]

    kind = "Deposit" if endpoint in DEPOSIT_ENDPOINTS else "Withdrawal"
    rollback, confirm = f"rollback{kind}", f"confirm{kind}"
    begin = "withdraw" if kind == "Withdrawal" else "deposit"
    if hit is not None and _ok(hit) and endpoint not in (confirm, rollback):
        # A delay (or an expired session on a call that still succeeded): the call worked.
        followed = later(confirm) or later(rollback)
        verdict = "pass" if followed else "pending"
        reaction = f"then {followed[0]['endpoint']}" if followed else "no confirm or rollback yet"
        return {
            **base,
            "expected": f"{confirm} or {rollback}",
            "reaction": reaction,
            "verdict": verdict,
        }
    if endpoint == begin:
        repeated = later(begin)
        rollbacks = later(rollback)
        if repeated:
            return {
                **base,
                "expected": rollback,
                "reaction": f"repeated the {begin}",
                "verdict": "fail",
            }
        if rollbacks:
            return {**base, "expected": rollback, "reaction": f"{rollback} sent", "verdict": "pass"}
        return {**base, "expected": rollback, "reaction": "no rollback", "verdict": "fail"}
    if hit is not None and _ok(hit):
        return {**base, "expected": "nothing more", "reaction": "—", "verdict": "pass"}
    retries = later(endpoint)
    if any(_ok(c) for c in retries):
        return {
            **base,
            "expected": f"{endpoint} again until it succeeds",
            "reaction": f"retried ({len(retries)} more)",
            "verdict": "pass",
        }
    return {
        **base,
        "expected": f"{endpoint} again until it succeeds",
        "reaction": "no successful retry" if retries else "not retried",
        "verdict": "fail",
    }


__all__ = ["MAX_WITHDRAWALS", "RETRY_SCHEDULE", "RULES", "RetrySchedule", "report"]
