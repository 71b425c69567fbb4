"""What sandbox fault injection costs a production partner's Wallet API call.

Two figures, in-process (no network, no database):

1. the branch itself — ``partner.sandbox and sandbox is not None`` — with ``timeit``;
2. ``WalletAPI.__call__`` for ``getBalance`` over a store that answers at once, so the layer's
   own cost is measured; run it with ``PYTHONPATH`` pointing at two source trees to compare.

Run: ``.venv/bin/python bench/sandbox_branch.py`` (docs/operator-guide.md, "Sandbox faults").
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
import timeit
from typing import Any

from qwallet.api.auth import PartnerAuthenticator
from qwallet.api.wallet import WalletAPI
from qwallet.clock import SystemClock
from qwallet.service.credentials import hash_password
from qwallet.settings import Settings
from qwallet.store.port import BalanceView, Partner, PartnerCredential

CALLS = 100_000
ROUNDS = 7
HASH = hash_password("pw")


class InstantStore:
    """Answers ``getBalance`` and the credential lookup at once."""

    async def get_balance(self, partner_id: int, token: str, now_ms: int) -> BalanceView:
        return BalanceView("XAG", 10_000)

    async def find_credential(self, username: str) -> list[PartnerCredential]:
        return [PartnerCredential(Partner(1, "prod", (), None), "prod", HASH)]


def branch_ns() -> float:
    names = {"p": Partner(1, "prod", (), None), "s": object()}
    empty = min(timeit.repeat("pass", globals=names, number=1_000_000, repeat=7))
    test = min(
        timeit.repeat(
            "if p.sandbox and s is not None: pass", globals=names, number=1_000_000, repeat=7
        )
    )
    return max(0.0, test - empty) / 1_000_000 * 1e9


async def layer_us() -> list[float]:
    unlimited = 10**12
    settings = Settings(
        database_url="sqlite:///unused",
        rate_limit_player_rps=float(unlimited),
        rate_limit_player_burst=unlimited,
        rate_limit_partner_rps=float(unlimited),
        rate_limit_partner_burst=unlimited,
    )
    store: Any = InstantStore()
    api = WalletAPI(store, settings, SystemClock(), PartnerAuthenticator(store, 3600))
    body = b'{"token": "0fabcdc4-fe07-44f2-b968-93da3b324898"}'
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/wallet/getBalance",
        "client": ("127.0.0.1", 1),
        "headers": [
            (b"authorization", b"Basic " + base64.b64encode(b"prod:pw")),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: Any) -> None:
        if event["type"] == "http.response.start":
            statuses.add(event["status"])

    for _ in range(2_000):  # the first call verifies the password; then it is cached
        await api(scope, receive, send)
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS // ROUNDS):
            await api(scope, receive, send)
        rounds.append((time.perf_counter() - started) / (CALLS // ROUNDS) * 1e6)
    assert statuses == {200}, statuses
    return rounds


def main() -> None:
    print(f"sandbox branch: {branch_ns():.1f} ns per call")
    rounds = asyncio.run(layer_us())
    print(
        f"WalletAPI getBalance, production partner: median {statistics.median(rounds):.1f} us,"
        f" min {min(rounds):.1f} us per call ({ROUNDS} rounds of {CALLS // ROUNDS})"
    )


if __name__ == "__main__":
    main()
