"""The partner reports over a real server on loopback, on both databases.

``GET /partner/transactions`` pages through exactly the caller's own transactions, in a stable
order; ``GET /partner/settlement`` (and its CSV) equals, day by day, what the ledger's entries
say about that partner; bad parameters and bad credentials are refused with the documented
errors.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from qwallet.domain.sessions import MS_PER_DAY
from qwallet.service import holds
from qwallet.store.sql import fetch_all
from tests.conftest import LiveServer, Platform, Wallet
from tests.test_openapi_document import pointer, validator

WalletFactory = Callable[..., Wallet]


def reports(server: LiveServer, wallet: Wallet) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=(wallet.username, wallet.password), timeout=30)


def all_pages(client: httpx.Client, from_ms: int, to_ms: int, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"fromMs": from_ms, "toMs": to_ms, "limit": limit}
    for _ in range(100):
        response = client.get("/partner/transactions", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-request-id"]
        body = response.json()
        validator(pointer("components", "schemas", "PartnerTransactionsPage")).validate(body)
        assert len(body["transactions"]) <= limit
        found.extend(body["transactions"])
        if body["nextCursor"] is None:
            return found
        params["cursor"] = body["nextCursor"]
    raise AssertionError("the listing did not end")


def ok(result: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    status, body = result
    assert status == 200 and "errorCode" not in body, body
    return body


def test_listing_pages_through_own_transactions_only(
    server: LiveServer, platform: Platform, new_wallet: WalletFactory
) -> None:
    start_ms = platform.clock.now_ms()
    wallet, other = new_wallet(balance="500.00"), new_wallet(balance="500.00")
    ok(other.money("withdraw", "other-1", "7.00"))
    made: dict[str, str] = {}
    for index in range(7):
        mm_id = f"w-{index}"
        ok(wallet.money("withdraw", mm_id, "10.00"))
        if index % 3 == 0:
            ok(wallet.money("confirmWithdrawal", mm_id, "10.00"))
            made[mm_id] = "CONFIRMED"
        elif index % 3 == 1:
            ok(wallet.money("rollbackWithdrawal", mm_id))
            made[mm_id] = "ROLLED_BACK"
        else:
            made[mm_id] = "PENDING"
        platform.clock.advance(1)
    ok(wallet.money("deposit", "d-1", "3.50"))
    ok(wallet.money("confirmDeposit", "d-1", "3.50"))
    made["d-1"] = "CONFIRMED"
    ok(wallet.money("rollbackWithdrawal", "never-sent"))  # blocks a late original
    made["never-sent"] = "ROLLED_BACK"
    ok(other.money("deposit", "other-2", "1.00"))
    end_ms = platform.clock.now_ms() + 1

    with reports(server, wallet) as client:
        for limit in (1, 2, 3, 500):
            rows = all_pages(client, start_ms, end_ms, limit)
            assert {row["mmTransactionId"]: row["state"] for row in rows} == made
            assert len(rows) == len(made)
            keys = [(row["createdAtMs"], row["qwTransactionId"]) for row in rows]
            assert keys == sorted(keys)
    by_id = {row["mmTransactionId"]: row for row in rows}
    assert by_id["w-0"]["kind"] == "WITHDRAWAL" and by_id["d-1"]["kind"] == "DEPOSIT"
    assert by_id["w-0"]["amount"] == {"amount": 10.0, "currencyCode": "XAG"}
    assert by_id["w-0"]["finishedAtMs"] >= by_id["w-0"]["createdAtMs"]
    assert by_id["w-2"]["finishedAtMs"] is None
    assert by_id["never-sent"]["amount"] is None
    assert by_id["w-0"]["playerId"] == wallet.player_id
    # The amount is written with the currency's decimals, never through a float.
    with reports(server, wallet) as client:
        text = client.get(
            "/partner/transactions", params={"fromMs": start_ms, "toMs": end_ms, "limit": 1}
        ).text
    assert '"amount":10.00' in text

    # The other partner sees its own two, and a cursor of ours names nothing of it.
    with reports(server, wallet) as client:
        first = client.get(
            "/partner/transactions", params={"fromMs": start_ms, "toMs": end_ms, "limit": 1}
        ).json()
    with reports(server, other) as client:
        theirs = all_pages(client, start_ms, end_ms, 10)
        assert {row["mmTransactionId"] for row in theirs} == {"other-1", "other-2"}
        response = client.get(
            "/partner/transactions",
            params={"fromMs": start_ms, "toMs": end_ms, "cursor": first["nextCursor"]},
        )
        assert response.status_code == 200
        assert {row["mmTransactionId"] for row in response.json()["transactions"]} <= {
            "other-1",
            "other-2",
        }


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/partner/transactions", {}, "Missing query parameter"),
        ("/partner/transactions", {"fromMs": "0"}, "toMs"),
        ("/partner/transactions", {"fromMs": "10", "toMs": "10"}, "after fromMs"),
        ("/partner/transactions", {"fromMs": "-1", "toMs": "10"}, "milliseconds"),
        ("/partner/transactions", {"fromMs": "1e3", "toMs": "10"}, "milliseconds"),
        ("/partner/transactions", {"fromMs": "0", "toMs": str(32 * MS_PER_DAY)}, "31 days"),
        ("/partner/transactions", {"fromMs": "0", "toMs": "9", "limit": "0"}, "limit"),
        ("/partner/transactions", {"fromMs": "0", "toMs": "9", "limit": "501"}, "limit"),
        ("/partner/transactions", {"fromMs": "0", "toMs": "9", "limit": "x"}, "limit"),
        ("/partner/transactions", {"fromMs": "0", "toMs": "9", "cursor": "!"}, "cursor"),
        (
            "/partner/transactions",
            {"fromMs": "0", "toMs": "9", "cursor": cursor_of("5.x' OR 1=1")},
            "cursor",
        ),
        ("/partner/transactions", {"fromMs": "0", "toMs": "9", "partnerId": "1"}, "Unknown"),
        ("/partner/settlement", {}, "fromDate"),
        ("/partner/settlement", {"fromDate": "2026-02-30"}, "YYYY-MM-DD"),
        ("/partner/settlement", {"fromDate": "20261201"}, "YYYY-MM-DD"),
        ("/partner/settlement", {"fromDate": "2026-12-02", "toDate": "2026-12-01"}, "before"),
        ("/partner/settlement", {"fromDate": "2026-01-01", "toDate": "2026-02-01"}, "31 days"),
        ("/partner/settlement.csv", {"fromDate": "2026-12-01", "partner": "x"}, "Unknown"),
    ],
)
def test_bad_parameters_are_refused(
    server: LiveServer, new_wallet: WalletFactory, path: str, params: dict[str, str], says: str
) -> None:
    wallet = new_wallet()
    with reports(server, wallet) as client:
        response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorCode"] == 101 and says in body["errorDescription"], body


def test_repeated_parameter_is_refused(server: LiveServer, new_wallet: WalletFactory) -> None:
    wallet = new_wallet()
    with reports(server, wallet) as client:
        response = client.get("/partner/transactions?fromMs=0&toMs=9&toMs=99")
    assert response.status_code == 400 and "more than once" in response.json()["errorDescription"]


@pytest.mark.parametrize(
    "path", ["/partner/transactions", "/partner/settlement", "/partner/settlement.csv"]
)
def test_credentials_are_required(server: LiveServer, new_wallet: WalletFactory, path: str) -> None:
    wallet = new_wallet()
    params = {"fromMs": "0", "toMs": "9", "fromDate": "2026-12-01"}
    params = {k: v for k, v in params.items() if ("Ms" in k) == path.endswith("transactions")}
    for auth in (None, (wallet.username, "wrong-password"), ("nobody", "x")):
        response = httpx.get(server.url + path, params=params, auth=auth, timeout=30)
        assert response.status_code == 401, response.text
        assert response.json()["errorCode"] == 103
        assert response.headers["www-authenticate"].startswith("Basic")
    response = httpx.post(server.url + path, auth=(wallet.username, wallet.password), timeout=30)
    assert response.status_code == 405


def test_allow_list_applies(
    server: LiveServer, platform: Platform, new_wallet: WalletFactory
) -> None:
    wallet = new_wallet(ip_allow=["192.0.2.0/24"])
    with reports(server, wallet) as client:
        response = client.get("/partner/settlement", params={"fromDate": "2026-12-01"})
    assert response.status_code == 403 and response.json()["errorCode"] == 103


# -- settlement against the ledger ---------------------------------------------------------------


def ledger_day_totals(
    platform: Platform, partner: str, start_ms: int, end_ms: int
) -> dict[tuple[int, str], dict[str, tuple[int, int]]]:
    """From the ledger entries alone: per (UTC day, currency), the count and sum of each
    settlement line, by the entry that moved the money at the terminal step."""
    rows = platform.run(
        fetch_all(
            platform.store,
            "SELECT e.created_at_ms, e.currency, e.phase, e.account, e.amount_minor, t.kind"
            " FROM ledger_entries e JOIN transactions t ON t.qw_transaction_id = e.transaction_id"
            " JOIN partners p ON p.id = t.partner_id"
            " WHERE p.name = $1 AND e.created_at_ms >= $2 AND e.created_at_ms < $3"
            " AND e.phase IN ('confirm', 'rollback') AND e.amount_minor > 0",
            partner,
            start_ms,
            end_ms,
        )
    )
    # The credited leg of each terminal step names what happened.
    lines = {
        ("withdrawal", "confirm", "partner"): "withdrawals_confirmed",
        ("withdrawal", "rollback", "available"): "withdrawals_rolled_back",
        ("deposit", "confirm", "available"): "deposits_confirmed",
        ("deposit", "rollback", "partner"): "deposits_rolled_back",
    }
    totals: dict[tuple[int, str], dict[str, tuple[int, int]]] = {}
    for row in rows:
        line = lines[(row["kind"], row["phase"], row["account"])]
        day = totals.setdefault((int(row["created_at_ms"]) // MS_PER_DAY, row["currency"]), {})
        count, total = day.get(line, (0, 0))
        day[line] = (count + 1, total + int(row["amount_minor"]))
    return totals


def to_minor(amount: float) -> int:
    """An XAG amount of an answer (two decimals) in minor units, exactly."""
    return int(Decimal(str(amount)) * 100)


def test_settlement_equals_the_ledger(
    server: LiveServer, platform: Platform, new_wallet: WalletFactory
) -> None:
    clock = platform.clock
    # Start a fresh UTC day, a minute in, so every step below stays inside its day.
    clock.advance(MS_PER_DAY - clock.now_ms() % MS_PER_DAY + 60_000)
    first_day_ms = clock.now_ms() - clock.now_ms() % MS_PER_DAY
    wallet, other = new_wallet(balance="900.00"), new_wallet(balance="900.00")
    ok(wallet.money("withdraw", "a", "10.00"))
    ok(wallet.money("confirmWithdrawal", "a", "10.00"))
    ok(wallet.money("withdraw", "b", "2.25"))
    ok(wallet.money("confirmWithdrawal", "b", "2.25"))
    ok(wallet.money("withdraw", "c", "30.00"))
    ok(wallet.money("rollbackWithdrawal", "c"))
    ok(wallet.money("deposit", "d", "5.00"))
    ok(wallet.money("confirmDeposit", "d", "5.00"))
    ok(wallet.money("deposit", "e", "1.00"))
    ok(wallet.money("rollbackDeposit", "e"))
    ok(wallet.money("rollbackWithdrawal", "blocked"))  # no amount: counted nowhere
    ok(wallet.money("withdraw", "late", "4.00"))  # confirmed tomorrow: tomorrow's
    ok(wallet.money("withdraw", "open", "1.00"))  # never finished: no day
    held_deposit = ok(wallet.money("deposit", "held", "2.00"))  # an operator decides tomorrow
    ok(other.money("withdraw", "x", "99.00"))
    ok(other.money("confirmWithdrawal", "x", "99.00"))
    # The next day (the sessions expire; confirm and rollback accept an expired token).
    clock.advance(MS_PER_DAY)
    ok(wallet.money("confirmWithdrawal", "late", "4.00"))
    ok(wallet.money("confirmWithdrawal", "a", "10.00"))  # a replay moves nothing
    wallet.token = platform.create_session(wallet.player_id, wallet.username)
    ok(wallet.money("deposit", "f", "7.00"))
    ok(wallet.money("confirmDeposit", "f", "7.00"))
    platform.run(
        holds.resolve_by_operator(
            platform.store,
            held_deposit["qwTransactionId"],
            "rollback",
            "the studio never confirmed it",
            operator="ops",
            now_ms=clock.now_ms(),
        )
    )

    first = dt.date(1970, 1, 1) + dt.timedelta(days=first_day_ms // MS_PER_DAY)
    second = first + dt.timedelta(days=1)
    with reports(server, wallet) as client:
        body = client.get(
            "/partner/settlement",
            params={"fromDate": first.isoformat(), "toDate": second.isoformat()},
        ).json()
        csv_response = client.get(
            "/partner/settlement.csv",
            params={"fromDate": first.isoformat(), "toDate": second.isoformat()},
        )
        one_day = client.get("/partner/settlement", params={"fromDate": second.isoformat()})
    validator(pointer("components", "schemas", "PartnerSettlement")).validate(body)
    assert body["fromDate"] == first.isoformat() and body["toDate"] == second.isoformat()
    days = {(day["date"], day["currencyCode"]): day for day in body["days"]}
    assert set(days) == {(first.isoformat(), "XAG"), (second.isoformat(), "XAG")}

    day_one = days[(first.isoformat(), "XAG")]
    assert day_one["withdrawals"] == {
        "confirmedCount": 2,
        "confirmedAmount": {"amount": 12.25, "currencyCode": "XAG"},
        "rolledBackCount": 1,
        "rolledBackAmount": {"amount": 30.0, "currencyCode": "XAG"},
    }
    assert day_one["deposits"]["confirmedCount"] == 1
    assert day_one["deposits"]["rolledBackCount"] == 1
    assert day_one["net"] == {"amount": 7.25, "currencyCode": "XAG"}
    assert one_day.json()["days"] == [days[(second.isoformat(), "XAG")]]

    # Day by day, every line equals the ledger's entries for that partner.
    assert platform.xag.decimals == 2
    ledger = ledger_day_totals(
        platform, wallet.username, first_day_ms, first_day_ms + 2 * MS_PER_DAY
    )
    assert len(ledger) == 2
    for (day_number, currency), lines in ledger.items():
        date = (dt.date(1970, 1, 1) + dt.timedelta(days=day_number)).isoformat()
        reported = days[(date, currency)]
        for line, (count, total_minor) in lines.items():
            kind, _, state = line.partition("_")
            key = "confirmed" if state == "confirmed" else "rolledBack"
            section = reported[kind]
            assert section[f"{key}Count"] == count, (date, line)
            assert to_minor(section[f"{key}Amount"]["amount"]) == total_minor
        withdrawn = lines.get("withdrawals_confirmed", (0, 0))[1]
        deposited = lines.get("deposits_confirmed", (0, 0))[1]
        assert to_minor(reported["net"]["amount"]) == withdrawn - deposited

    # The CSV says the same, with the currency's decimals.
    assert csv_response.status_code == 200
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(csv_response.text)))
    assert [row["date"] for row in table] == [first.isoformat(), second.isoformat()]
    assert table[0]["withdrawals_confirmed_amount"] == "12.25"
    assert table[0]["withdrawals_rolled_back_amount"] == "30.00"
    assert table[0]["deposits_confirmed_amount"] == "5.00"
    assert table[0]["deposits_rolled_back_count"] == "1"
    assert table[0]["net_amount"] == "7.25"
    assert table[1]["withdrawals_confirmed_amount"] == "4.00"
    assert table[1]["net_amount"] == "-3.00"
    # The operator's rollback counts on the day it was made, whoever made it.
    assert table[1]["deposits_rolled_back_count"] == "1"
    assert table[1]["deposits_rolled_back_amount"] == "2.00"

    # The other partner's day holds only its own withdrawal.
    with reports(server, other) as client:
        theirs = client.get("/partner/settlement", params={"fromDate": first.isoformat()}).json()
    assert [day["withdrawals"]["confirmedCount"] for day in theirs["days"]] == [1]
    assert theirs["days"][0]["net"]["amount"] == 99.0
