"""Fault rule counters across two ``qwallet serve`` processes on one database (both backends):
the next-N and every-Kth counters are taken atomically in the database, so calls racing on
different processes hit exactly N (or every Kth) of them, and each hit is recorded once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx

from qwallet.store.sql import fetch_all
from tests.conftest import Platform
from tests.integration.test_multiprocess import server_urls  # noqa: F401 (fixture)
from tests.integration.test_sandbox_faults import add_rule, rule, sandbox_wallet

CALLS = 60


def test_counters_hold_across_two_server_processes(
    server_urls: list[str],  # noqa: F811
    platform: Platform,
) -> None:
    first = SimpleNamespace(url=server_urls[0])  # what ``Wallet`` needs of a server
    name, wallet = sandbox_wallet(first, platform)  # type: ignore[arg-type]
    next_rule = add_rule(
        platform, name, endpoint="getBalance", action="error", next_calls=15, error_code=134
    )
    every_rule = add_rule(
        platform, name, endpoint="verifySession", action="error", every_kth=4, error_code=100
    )

    def call(number: int) -> int:
        endpoint = "getBalance" if number % 2 == 0 else "verifySession"
        url = server_urls[number % 4 // 2]  # both endpoints on both processes
        with httpx.Client(base_url=url, auth=(wallet.username, wallet.password), timeout=30) as c:
            body = c.post(f"/wallet/{endpoint}", json={"token": wallet.token}).json()
        return int(body.get("errorCode", 0))

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(call, range(CALLS * 2)))
    assert codes.count(134) == 15
    assert codes.count(100) == CALLS // 4
    assert codes.count(0) == CALLS * 2 - 15 - CALLS // 4
    hit_next, hit_every = rule(platform, name, next_rule), rule(platform, name, every_rule)
    assert (hit_next["seen"], hit_next["fired"], hit_next["remaining"]) == (15, 15, 0)
    assert (hit_every["seen"], hit_every["fired"]) == (CALLS, CALLS // 4)
    recorded = platform.run(
        fetch_all(
            platform.store,
            "SELECT rule_id, COUNT(*) AS n FROM sandbox_faults WHERE rule_id IN ($1, $2)"
            " GROUP BY rule_id ORDER BY rule_id",
            next_rule,
            every_rule,
        )
    )
    assert [(r["rule_id"], r["n"]) for r in recorded] == [(next_rule, 15), (every_rule, CALLS // 4)]
    logged = platform.run(
        fetch_all(
            platform.store,
            "SELECT COUNT(*) AS n FROM sandbox_calls WHERE partner_id ="
            " (SELECT id FROM partners WHERE name = $1)",
            name,
        )
    )
    assert logged[0]["n"] == CALLS * 2
    wallet.close()
