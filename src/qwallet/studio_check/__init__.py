"""The integration tester of a studio's own endpoints (``qwallet partners check NAME``).

It calls the studio's payment-callback receiver and Query Withdrawal endpoint, as the platform
would, with vectors that each break one rule (``vectors``), and compares every answer with what
the contract requires (``runner``); ``report`` prints the table and the HTML page. The test data
comes from what the studio itself did at the platform (``target``): the tester creates no money
movement, and sends its forged callbacks only to sandbox partners.
"""

from __future__ import annotations

import httpx

from qwallet.clock import Clock
from qwallet.domain.money import CurrencyRegistry
from qwallet.service import audit
from qwallet.store.sql import SqlDatabase
from qwallet.studio_check.runner import CheckRefused, CheckResult, RowResult, run_check
from qwallet.studio_check.target import DataChoice, Target, load_target

__all__ = [
    "CheckRefused",
    "CheckResult",
    "DataChoice",
    "RowResult",
    "Target",
    "check_partner",
    "load_target",
    "record_check",
    "run_check",
]


async def check_partner(
    db: SqlDatabase,
    currencies: CurrencyRegistry,
    clock: Clock,
    partner: str,
    choice: DataChoice | None = None,
    *,
    query_only: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CheckResult:
    """Load the partner's endpoints and test data, refuse a production partner unless
    ``query_only``, and run every vector."""
    target = await load_target(db, currencies, partner, choice or DataChoice())
    return await run_check(target, clock, query_only=query_only, transport=transport)


async def record_check(db: SqlDatabase, operator: str, result: CheckResult, now_ms: int) -> None:
    """Audit ``partner.check``: who sent test vectors (forged callbacks included) to which
    studio, and what came of it. The check changes nothing else at the platform."""
    details = {
        "passed": result.passed(),
        "queryOnly": result.query_only,
        "missed": [row.key for row in result.misses],
        "skipped": [row.key for row in result.skips],
    }
    async with db.transaction() as tx:
        await audit.record(tx, operator, "partner.check", result.partner, details, now_ms)
