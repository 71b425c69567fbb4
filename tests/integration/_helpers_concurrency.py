"""Concurrent scenarios on one wallet, shared by the one-server and the several-server tests.

Each scenario seeds its own partner, player and session through the operator helpers, fires its
requests at once with ``asyncio.gather`` over one ``httpx.AsyncClient`` per server (requests are
spread round-robin over the servers), then checks the answers, the wallet's cached balances and
the reconciliation. Answers of 134 ("being processed by a concurrent request") are allowed where
the contract allows them and retried shortly, as a partner would.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from tests.conftest import Platform

CONNECTIONS = 200
RETRY_134 = 100
RETRY_DELAY_S = 0.02
ENDPOINTS = {
    "withdrawal": ("withdraw", "confirmWithdrawal", "rollbackWithdrawal"),
    "deposit": ("deposit", "confirmDeposit", "rollbackDeposit"),
}


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    player_id: str
    token: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    raw: bytes

    @property
    def code(self) -> int:
        """0 for a success, else the error code."""
        return int(self.body.get("errorCode", 0))

    @property
    def balance(self) -> Decimal:
        return Decimal(str(self.body["balance"]["amount"]))


def open_account(platform: Platform, balance: str) -> Account:
    username, password = platform.create_partner()
    player_id = platform.create_player(balance)
    return Account(username, password, player_id, platform.create_session(player_id, username))


def money_body(token: str, mm_id: str, amount: str | None = None, **extra: Any) -> bytes:
    """A money call's body; ``amount`` is spliced in as JSON number text (``"1.00"``)."""
    text = json.dumps({"token": token, "mmTransactionId": mm_id, **extra})
    if amount is not None:
        text = text[:-1] + f', "amount": {{"amount": {amount}, "currencyCode": "XAG"}}}}'
    return text.encode()


Call = tuple[str, bytes]  # (endpoint, body)


async def _post(client: httpx.AsyncClient, call: Call, retry_134: bool) -> Answer:
    endpoint, body = call
    for _ in range(RETRY_134):
        response = await client.post(
            f"/wallet/{endpoint}", content=body, headers={"Content-Type": "application/json"}
        )
        answer = Answer(
            response.status_code,
            json.loads(response.content, parse_float=Decimal),
            response.content,
        )
        if not (retry_134 and answer.code == 134):
            return answer
        await asyncio.sleep(RETRY_DELAY_S)
    raise AssertionError(f"still 134 after {RETRY_134} attempts: {call}")


async def _fire(
    urls: list[str], account: Account, calls: list[Call], retry_134: bool
) -> list[Answer]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    clients = [
        httpx.AsyncClient(
            base_url=url, auth=(account.username, account.password), limits=limits, timeout=60
        )
        for url in urls
    ]
    try:
        # Warm the credential cache and the connections first, so the burst below is the race.
        await asyncio.gather(
            *(
                client.post("/wallet/getBalance", json={"token": account.token})
                for client in clients
            )
        )
        return list(
            await asyncio.gather(
                *(
                    _post(clients[index % len(clients)], call, retry_134)
                    for index, call in enumerate(calls)
                )
            )
        )
    finally:
        for client in clients:
            await client.aclose()


def fire(
    urls: list[str], account: Account, calls: list[Call], retry_134: bool = True
) -> list[Answer]:
    """Send every call at once; the answers come back in the order of ``calls``."""
    return asyncio.run(_fire(urls, account, calls, retry_134))


def assert_wallet(platform: Platform, account: Account, available: str, held: str, pending: str):
    shown = platform.player(account.player_id)
    assert (shown["available"], shown["held"], shown["pendingIn"]) == (available, held, pending), (
        shown
    )
    report = platform.reconcile()
    assert report.ok, report


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


# -- the scenarios ----------------------------------------------------------------------------


def oversubscribed_withdrawals(platform: Platform, urls: list[str], k: int = 37, n: int = 100):
    """n concurrent withdrawals of 1.00 on exactly k.00: exactly k hold funds, the rest get 121."""
    account = open_account(platform, f"{k}.00")
    calls = [("withdraw", money_body(account.token, f"over-{i}", "1.00")) for i in range(n)]
    answers = fire(urls, account, calls)
    codes = Counter(answer.code for answer in answers)
    assert codes == {0: k, 121: n - k}, codes
    assert all(answer.status == 200 for answer in answers)
    assert len({answer.body["qwTransactionId"] for answer in answers if answer.code == 0}) == k
    # Each success saw a distinct balance: k-1.00 … 0.00, one per serialized hold.
    successes = sorted(answer.balance for answer in answers if answer.code == 0)
    assert successes == [Decimal(i) for i in range(k)], successes
    assert all(answer.balance >= 0 for answer in answers if answer.code == 121)
    assert_wallet(platform, account, "0.00", f"{k}.00", "0.00")
    # Confirm half, roll back the rest, all at once: the books still balance.
    held = [i for i, answer in enumerate(answers) if answer.code == 0]
    finish = [
        (
            ("confirmWithdrawal", money_body(account.token, f"over-{i}", "1.00"))
            if position % 2 == 0
            else ("rollbackWithdrawal", money_body(account.token, f"over-{i}"))
        )
        for position, i in enumerate(held)
    ]
    assert all(answer.code == 0 for answer in fire(urls, account, finish))
    rolled_back = k // 2
    assert_wallet(platform, account, f"{rolled_back}.00", "0.00", "0.00")


def deposits_at_the_ceiling(platform: Platform, urls: list[str], k: int = 10, n: int = 60):
    """n concurrent deposits of 1.00 with room for k under the maximum balance: k succeed."""
    ceiling = Decimal(platform.xag.max_balance_minor) / 100
    start = ceiling - k
    account = open_account(platform, _money(start))
    calls = [("deposit", money_body(account.token, f"ceil-{i}", "1.00")) for i in range(n)]
    answers = fire(urls, account, calls)
    codes = Counter(answer.code for answer in answers)
    assert codes == {0: k, 102: n - k}, codes
    assert_wallet(platform, account, _money(start), "0.00", f"{k}.00")


def duplicate_storm(platform: Platform, urls: list[str], kind: str, n: int = 20):
    """n identical begin calls at once: one executes, the others replay its answer (or get 134)."""
    begin, confirm, _ = ENDPOINTS[kind]
    account = open_account(platform, "100.00")
    call = (begin, money_body(account.token, "storm", "5.00", txDescription="storm"))
    answers = fire(urls, account, [call] * n, retry_134=False)
    codes = Counter(answer.code for answer in answers)
    assert set(codes) <= {0, 134} and codes[0] >= 1, codes
    first = next(answer for answer in answers if answer.code == 0)
    assert all(answer.raw == first.raw for answer in answers if answer.code == 0), answers
    # After the storm a replay is still the same answer, byte for byte.
    assert fire(urls, account, [call])[0].raw == first.raw
    if kind == "withdrawal":
        assert first.balance == Decimal("95.00")
        assert_wallet(platform, account, "95.00", "5.00", "0.00")
    else:
        assert first.balance == Decimal("100.00")
        assert_wallet(platform, account, "100.00", "0.00", "5.00")
    # The same storm on the confirm: one moves the money, the rest replay.
    confirm_call = (confirm, money_body(account.token, "storm", "5.00"))
    confirms = fire(urls, account, [confirm_call] * n)
    assert {answer.raw for answer in confirms} == {confirms[0].raw}, confirms
    assert confirms[0].body["qwTransactionId"] == first.body["qwTransactionId"]
    if kind == "withdrawal":
        assert_wallet(platform, account, "95.00", "0.00", "0.00")
    else:
        assert_wallet(platform, account, "105.00", "0.00", "0.00")


def confirm_rollback_race(platform: Platform, urls: list[str], kind: str, rounds: int = 50):
    """A confirm and a rollback of the same pending transaction at once: exactly one wins.

    All rounds run at once (``rounds`` pending transactions, two racing calls each); the confirm
    and the rollback of a round go to different servers when there are several.
    """
    begin, confirm, rollback = ENDPOINTS[kind]
    account = open_account(platform, "100.00")
    opened = fire(
        urls,
        account,
        [(begin, money_body(account.token, f"race-{i}", "1.00")) for i in range(rounds)],
    )
    assert all(answer.code == 0 for answer in opened), opened
    calls: list[Call] = []
    for i in range(rounds):
        confirm_call = (confirm, money_body(account.token, f"race-{i}", "1.00"))
        rollback_call = (rollback, money_body(account.token, f"race-{i}", rollbackReason="race"))
        # Alternate which of the two is sent first, and (round-robin) to which server.
        calls += [confirm_call, rollback_call] if i % 2 == 0 else [rollback_call, confirm_call]
    answers = fire(urls, account, calls)
    confirmed = 0
    for i in range(rounds):
        pair = answers[2 * i : 2 * i + 2]
        if i % 2:
            pair.reverse()
        confirm_answer, rollback_answer = pair
        outcome = (confirm_answer.code, rollback_answer.code)
        assert outcome in {(0, 133), (132, 0)}, (i, confirm_answer.body, rollback_answer.body)
        winner = confirm_answer if outcome[0] == 0 else rollback_answer
        assert winner.body["qwTransactionId"] == opened[i].body["qwTransactionId"]
        confirmed += outcome[0] == 0
    # Replays after the race: the winner's answer again, the loser's error again.
    replays = fire(urls, account, calls)
    assert [a.code for a in replays] == [a.code for a in answers]
    assert [a.raw for a in replays if a.code == 0] == [a.raw for a in answers if a.code == 0]
    if kind == "withdrawal":
        assert_wallet(platform, account, _money(Decimal(100 - confirmed)), "0.00", "0.00")
    else:
        assert_wallet(platform, account, _money(Decimal(100 + confirmed)), "0.00", "0.00")
    return confirmed


def original_racing_rollback(platform: Platform, urls: list[str], kind: str, rounds: int = 50):
    """A begin and the rollback of the same id at once: either the rollback cancels the pending
    transaction, or it arrives first and blocks the late original (132). Never a stuck hold."""
    begin, _, rollback = ENDPOINTS[kind]
    account = open_account(platform, "100.00")
    calls: list[Call] = []
    for i in range(rounds):
        begin_call = (begin, money_body(account.token, f"late-{i}", "1.00"))
        rollback_call = (rollback, money_body(account.token, f"late-{i}", rollbackReason="lost"))
        calls += [begin_call, rollback_call] if i % 2 == 0 else [rollback_call, begin_call]
    answers = fire(urls, account, calls)
    outcomes: Counter[tuple[int, int]] = Counter()
    for i in range(rounds):
        pair = answers[2 * i : 2 * i + 2]
        if i % 2:
            pair.reverse()
        begin_answer, rollback_answer = pair
        outcome = (begin_answer.code, rollback_answer.code)
        assert outcome in {(0, 0), (132, 0)}, (i, begin_answer.body, rollback_answer.body)
        if outcome == (0, 0):
            same = begin_answer.body["qwTransactionId"] == rollback_answer.body["qwTransactionId"]
            assert same, (begin_answer.body, rollback_answer.body)
        outcomes[outcome] += 1
    # Whatever the order was, every id is now rolled back: a new begin is refused with 132.
    late = fire(urls, account, [c for c in calls if c[0] == begin])
    assert {answer.code for answer in late} == {132}, late
    assert_wallet(platform, account, "100.00", "0.00", "0.00")
    return outcomes


def one_id_two_players(platform: Platform, urls: list[str], kind: str, n: int = 20):
    """Two players of one partner send the same new id at once: one player's call executes (and
    its duplicates replay it), every call of the other player gets 131."""
    begin, _, _ = ENDPOINTS[kind]
    first = open_account(platform, "100.00")
    other_player = platform.create_player("100.00")
    other_token = platform.create_session(other_player, first.username)
    tokens = [first.token, other_token]
    calls = [(begin, money_body(tokens[i % 2], "shared", "5.00")) for i in range(n)]
    answers = fire(urls, first, calls)
    by_player = [Counter(answer.code for answer in answers[i::2]) for i in range(2)]
    assert sorted(sorted(c) for c in by_player) == [[0], [131]], by_player
    winner = 0 if set(by_player[0]) == {0} else 1
    successes = {answer.raw for answer in answers[winner::2]}
    assert len(successes) == 1, successes
    winner_id = [first.player_id, other_player][winner]
    loser_id = [first.player_id, other_player][1 - winner]
    if kind == "withdrawal":
        expected = {winner_id: ("95.00", "5.00", "0.00"), loser_id: ("100.00", "0.00", "0.00")}
    else:
        expected = {winner_id: ("100.00", "0.00", "5.00"), loser_id: ("100.00", "0.00", "0.00")}
    for player_id, balances in expected.items():
        shown = platform.player(player_id)
        assert (shown["available"], shown["held"], shown["pendingIn"]) == balances, shown
    report = platform.reconcile()
    assert report.ok, report
