"""Faults on demand for sandbox partners: the rules, taking a fault per call, and the call log.

A rule says "answer the next N / every Kth call of endpoint E with an action": an error code
(before the call runs, or after it committed), a delay, a dropped connection after the commit,
or the session expired now. Rules exist only for sandbox partners: ``add_rule`` refuses any
other partner, and ``take`` re-checks ``partners.sandbox`` in the statement that advances the
counters, so a partner switched to production meets no fault even from a server whose cached
credentials still say sandbox.

``take`` is one ``UPDATE … RETURNING`` over the partner's live rules for the endpoint, inside one
transaction that also records the faults it injected: the row lock makes "take one" atomic, so
counters are exact with any number of concurrent calls and server processes (PostgreSQL locks
the rows; SQLite serializes writers across processes).

The call log (``sandbox_calls``) gets one row per Wallet API call of a sandbox partner, for the
protocol report (``qwallet.service.protocol_report``); ``purge_calls`` deletes rows older than
the retention. Its size is sandbox calls per second times the retention, independent of production
traffic, which never writes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qwallet.domain.errors import ErrorCode
from qwallet.service import audit
from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row, SqlDatabase, SqlTransaction

ENDPOINTS = (
    "verifySession",
    "getBalance",
    "withdraw",
    "confirmWithdrawal",
    "rollbackWithdrawal",
    "deposit",
    "confirmDeposit",
    "rollbackDeposit",
)
"""The Wallet API endpoints (spec §1.5); a rule names one of them or ``*`` for any."""

ANY_ENDPOINT = "*"
ACTIONS = ("error", "delay", "drop", "expire_session")
MAX_DELAY_MS = 60_000
MAX_COUNT = 1_000_000
MAX_LIVE_RULES = 50
# 103 and 104 are transport answers (401/403, 429 with Retry-After), not the use case's.
INJECTABLE_CODES = tuple(
    code for code in ErrorCode if code not in (ErrorCode.NOT_AUTHORIZED, ErrorCode.RATE_LIMITED)
)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What an operator asks for; exactly one of ``next_calls`` and ``every_kth`` is set."""

    endpoint: str
    action: str
    next_calls: int | None = None
    every_kth: int | None = None
    error_code: int | None = None
    after_commit: bool = False
    delay_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault taken for one call: ``id`` is its row in ``sandbox_faults``."""

    id: int
    rule_id: int
    action: str
    error_code: int | None
    after_commit: bool
    delay_ms: int | None


def check_spec(spec: RuleSpec) -> RuleSpec:
    """``spec`` when it is a valid rule, else an ``OperatorError`` that says what is wrong."""
    if spec.endpoint != ANY_ENDPOINT and spec.endpoint not in ENDPOINTS:
        raise OperatorError(
            f"unknown endpoint {spec.endpoint!r}: one of {', '.join(ENDPOINTS)} or '*'"
        )
    if spec.action not in ACTIONS:
        raise OperatorError(f"unknown action {spec.action!r}: one of {', '.join(ACTIONS)}")
    if (spec.next_calls is None) == (spec.every_kth is None):
        raise OperatorError("give exactly one of: the next N calls, or every Kth call")
    count = spec.next_calls if spec.next_calls is not None else spec.every_kth
    if count is None or not 1 <= count <= MAX_COUNT:
        raise OperatorError(f"N and K must be between 1 and {MAX_COUNT}")
    if spec.action == "error":
        if spec.error_code not in {int(code) for code in INJECTABLE_CODES}:
            codes = ", ".join(str(int(code)) for code in INJECTABLE_CODES)
            raise OperatorError(f"an error rule needs an error code, one of {codes}")
    elif spec.error_code is not None:
        raise OperatorError("only an error rule takes an error code")
    if spec.after_commit and spec.action != "error":
        raise OperatorError("only an error rule can answer after the commit (drop always does)")
    if spec.action == "delay":
        if spec.delay_ms is None or not 1 <= spec.delay_ms <= MAX_DELAY_MS:
            raise OperatorError(f"a delay rule needs a delay between 1 and {MAX_DELAY_MS} ms")
    elif spec.delay_ms is not None:
        raise OperatorError("only a delay rule takes a delay")
    return spec


async def _sandbox_partner_id(tx: SqlTransaction, name: str) -> int:
    row = await tx.fetchrow("SELECT id, sandbox FROM partners WHERE name = $1", name)
    if row is None:
        raise OperatorError(f"no partner named {name!r}")
    if not row["sandbox"]:
        raise OperatorError(
            f"partner {name!r} is a production partner: faults can only be set for sandbox"
            " partners (qwallet partners update NAME --sandbox)"
        )
    return int(row["id"])


def spec_row(spec: RuleSpec) -> dict[str, Any]:
    """``spec`` with the column names of ``sandbox_fault_rules`` (what ``describe`` reads)."""
    return {
        "endpoint": spec.endpoint,
        "action": spec.action,
        "error_code": spec.error_code,
        "after_commit": int(spec.after_commit),
        "delay_ms": spec.delay_ms,
        "remaining": spec.next_calls,
        "every": spec.every_kth,
    }


def fault_text(rule: Mapping[str, Any]) -> str:
    """What the rule does to a call it hits: ``error 121``, ``delay 300 ms`` …"""
    return {
        "error": f"error {rule['error_code']}"
        + (" after the commit" if rule["after_commit"] else ""),
        "delay": f"delay {rule['delay_ms']} ms",
        "drop": "commit, then drop the connection",
        "expire_session": "expire the session",
    }[str(rule["action"])]


def _ordinal(number: int) -> str:
    if number == 1:
        return "single"  # "every single call"
    suffixes = {1: "st", 2: "nd", 3: "rd"}
    suffix = "th" if 10 <= number % 100 <= 20 else suffixes.get(number % 10, "th")
    return f"{number}{suffix}"


def describe(rule: Mapping[str, Any]) -> str:
    """``error 121 on the next 3 calls of withdraw``: how the console and the CLI show a rule."""
    endpoint = str(rule["endpoint"])
    target = "any endpoint" if endpoint == ANY_ENDPOINT else endpoint
    if rule["every"]:
        return f"{fault_text(rule)} on every {_ordinal(int(rule['every']))} call of {target}"
    seen = int(rule.get("seen") or 0)  # a next-N rule hits every call it matches
    total = int(rule["remaining"]) + seen
    calls = "call" if total == 1 else f"{total} calls"
    left = f" ({rule['remaining']} left)" if seen else ""
    return f"{fault_text(rule)} on the next {calls} of {target}{left}"


async def add_rule(
    db: SqlDatabase, partner: str, spec: RuleSpec, *, operator: str, now_ms: int
) -> int:
    """Create a rule for the sandbox partner named ``partner``; return its id (audited)."""
    check_spec(spec)
    async with db.transaction() as tx:
        partner_id = await _sandbox_partner_id(tx, partner)
        live = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM sandbox_fault_rules"
            " WHERE partner_id = $1 AND removed_at_ms IS NULL",
            partner_id,
        )
        if live is not None and int(live["n"]) >= MAX_LIVE_RULES:
            raise OperatorError(f"partner {partner!r} already has {MAX_LIVE_RULES} live rules")
        row = await tx.fetchrow(
            "INSERT INTO sandbox_fault_rules (partner_id, endpoint, action, error_code,"
            " after_commit, delay_ms, remaining, every, created_at_ms, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            partner_id,
            spec.endpoint,
            spec.action,
            spec.error_code,
            int(spec.after_commit),
            spec.delay_ms,
            spec.next_calls,
            spec.every_kth,
            now_ms,
            operator,
        )
        assert row is not None
        rule_id = int(row["id"])
        await audit.record(
            tx,
            operator,
            "partner.fault_rule_added",
            partner,
            {"rule": rule_id, "description": describe(spec_row(spec))},
            now_ms,
        )
    return rule_id


async def remove_rule(
    db: SqlDatabase, partner: str, rule_id: int, *, operator: str, now_ms: int
) -> None:
    """Stop a rule (kept, with its counters, for the report); audited."""
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", partner)
        if row is None:
            raise OperatorError(f"no partner named {partner!r}")
        changed = await tx.execute(
            "UPDATE sandbox_fault_rules SET removed_at_ms = $1"
            " WHERE id = $2 AND partner_id = $3 AND removed_at_ms IS NULL",
            now_ms,
            rule_id,
            row["id"],
        )
        if not changed:
            raise OperatorError(f"partner {partner!r} has no live rule {rule_id}")
        await audit.record(
            tx, operator, "partner.fault_rule_removed", partner, {"rule": rule_id}, now_ms
        )


async def list_rules(db: SqlDatabase, partner: str, *, include_removed: bool = False) -> list[Row]:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT id FROM partners WHERE name = $1", partner)
        if row is None:
            raise OperatorError(f"no partner named {partner!r}")
        removed = "" if include_removed else " AND removed_at_ms IS NULL"
        return await tx.fetch(
            "SELECT id, endpoint, action, error_code, after_commit, delay_ms, remaining, every,"
            " seen, fired, created_at_ms, created_by, removed_at_ms FROM sandbox_fault_rules"
            f" WHERE partner_id = $1{removed} ORDER BY id",
            row["id"],
        )


def rule_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "endpoint": row["endpoint"],
        "action": row["action"],
        "errorCode": row["error_code"],
        "afterCommit": bool(row["after_commit"]),
        "delayMs": row["delay_ms"],
        "remaining": row["remaining"],
        "every": row["every"],
        "seen": row["seen"],
        "fired": row["fired"],
        "createdAtMs": row["created_at_ms"],
        "createdBy": row["created_by"],
        "removedAtMs": row["removed_at_ms"],
        "description": describe(row),
    }


_TAKE_SQL = (
    "UPDATE sandbox_fault_rules SET seen = seen + 1,"
    " remaining = CASE WHEN remaining IS NULL THEN NULL ELSE remaining - 1 END,"
    " fired = fired + CASE WHEN remaining IS NOT NULL OR (seen + 1) % every = 0 THEN 1 ELSE 0 END"
    " WHERE partner_id = $1 AND removed_at_ms IS NULL AND endpoint IN ($2, '*')"
    " AND (remaining IS NULL OR remaining > 0)"
    " AND EXISTS (SELECT 1 FROM partners WHERE id = $1 AND sandbox = 1)"
    " RETURNING id, action, error_code, after_commit, delay_ms, remaining, every, seen"
)


async def take(
    db: SqlDatabase,
    partner_id: int,
    endpoint: str,
    mm_transaction_id: str | None,
    request_id: str,
    now_ms: int,
) -> list[Fault] | None:
    """Count this call against every live rule that matches it; record and return the faults
    of the rules it hits (oldest rule first). None when the partner is no longer a sandbox
    partner (a server's cached flag is older than the row): the call is then not logged."""
    faults: list[Fault] = []
    async with db.transaction() as tx:
        partner = await tx.fetchrow("SELECT sandbox FROM partners WHERE id = $1", partner_id)
        if partner is None or not partner["sandbox"]:
            return None
        rows = await tx.fetch(_TAKE_SQL, partner_id, endpoint)
        for row in sorted(rows, key=lambda r: int(r["id"])):
            if row["every"] is not None and int(row["seen"]) % int(row["every"]) != 0:
                continue
            recorded = await tx.fetchrow(
                "INSERT INTO sandbox_faults (rule_id, partner_id, at_ms, endpoint,"
                " mm_transaction_id, request_id, action, detail)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                row["id"],
                partner_id,
                now_ms,
                endpoint,
                mm_transaction_id,
                request_id,
                row["action"],
                fault_text(row),
            )
            assert recorded is not None
            faults.append(
                Fault(
                    id=int(recorded["id"]),
                    rule_id=int(row["id"]),
                    action=str(row["action"]),
                    error_code=row["error_code"],
                    after_commit=bool(row["after_commit"]),
                    delay_ms=row["delay_ms"],
                )
            )
    return faults


async def expire_session(db: SqlDatabase, partner_id: int, token: str, now_ms: int) -> None:
    """End the session ``token`` of this partner now (an ``expire_session`` fault)."""
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE sessions SET expires_at_ms = $1"
            " WHERE token = $2 AND partner_id = $3 AND expires_at_ms > $1",
            now_ms,
            token,
            partner_id,
        )


@dataclass(frozen=True, slots=True)
class CallRecord:
    partner_id: int
    at_ms: int
    duration_ms: int
    endpoint: str
    mm_transaction_id: str | None
    request_id: str
    http_status: int | None
    error_code: int
    fault_id: int | None


async def record_call(db: SqlDatabase, call: CallRecord) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO sandbox_calls (partner_id, at_ms, duration_ms, endpoint,"
            " mm_transaction_id, request_id, http_status, error_code, fault_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            call.partner_id,
            call.at_ms,
            call.duration_ms,
            call.endpoint,
            call.mm_transaction_id,
            call.request_id,
            call.http_status,
            call.error_code,
            call.fault_id,
        )


async def purge_calls(db: SqlDatabase, before_ms: int) -> int:
    """Delete the call log and fault records older than ``before_ms``; return the calls
    deleted. Uses the ``at_ms`` indexes, so it costs what it deletes."""
    async with db.transaction() as tx:
        deleted = await tx.execute("DELETE FROM sandbox_calls WHERE at_ms < $1", before_ms)
        await tx.execute("DELETE FROM sandbox_faults WHERE at_ms < $1", before_ms)
    return deleted


async def partner_id_of(db: SqlDatabase, partner: str) -> tuple[int, bool]:
    """The id of the partner named ``partner`` and whether it is a sandbox partner."""
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT id, sandbox FROM partners WHERE name = $1", partner)
    if row is None:
        raise OperatorError(f"no partner named {partner!r}")
    return int(row["id"]), bool(row["sandbox"])


async def calls(
    db: SqlDatabase,
    partner_id: int,
    since_ms: int,
    until_ms: int,
    *,
    mm_transaction_id: str | None = None,
    limit: int = 100_000,
    newest_first: bool = False,
) -> list[Row]:
    """The partner's logged calls in ``[since_ms, until_ms)``, oldest first (or newest first),
    at most ``limit`` of them, each with the fault
    that hit it (``fault_action``, ``fault_detail``, ``rule_id``; NULL when none)."""
    where = " AND c.mm_transaction_id = $4" if mm_transaction_id is not None else ""
    order = "DESC" if newest_first else "ASC"
    args: list[object] = [partner_id, since_ms, until_ms]
    if mm_transaction_id is not None:
        args.append(mm_transaction_id)
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT c.id, c.at_ms, c.duration_ms, c.endpoint, c.mm_transaction_id, c.request_id,"
            " c.http_status, c.error_code, c.fault_id, f.action AS fault_action,"
            " f.detail AS fault_detail, f.rule_id"
            " FROM sandbox_calls c LEFT JOIN sandbox_faults f ON f.id = c.fault_id"
            f" WHERE c.partner_id = $1 AND c.at_ms >= $2 AND c.at_ms < $3{where}"
            f" ORDER BY c.at_ms {order}, c.id {order} LIMIT {int(limit)}",
            *args,
        )


async def faults(db: SqlDatabase, partner_id: int, since_ms: int, until_ms: int) -> list[Row]:
    """Every fault injected for the partner in ``[since_ms, until_ms)``, oldest first."""
    async with db.transaction() as tx:
        return await tx.fetch(
            "SELECT id, rule_id, at_ms, endpoint, mm_transaction_id, request_id, action, detail"
            " FROM sandbox_faults WHERE partner_id = $1 AND at_ms >= $2 AND at_ms < $3"
            " ORDER BY at_ms, id",
            partner_id,
            since_ms,
            until_ms,
        )


__all__ = [
    "ACTIONS",
    "ANY_ENDPOINT",
    "ENDPOINTS",
    "CallRecord",
    "Fault",
    "RuleSpec",
    "add_rule",
    "calls",
    "check_spec",
    "describe",
    "expire_session",
    "fault_text",
    "faults",
    "list_rules",
    "partner_id_of",
    "purge_calls",
    "record_call",
    "remove_rule",
    "rule_json",
    "spec_row",
    "take",
]
