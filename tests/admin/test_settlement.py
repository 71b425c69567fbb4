"""The console's settlement page and CSV over real HTTP, on both databases."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import httpx
import pytest

from qwallet.domain.sessions import MS_PER_DAY
from tests.conftest import LiveServer, Platform

from .conftest import Console


def today(platform: Platform) -> str:
    day = dt.date(1970, 1, 1) + dt.timedelta(days=platform.clock.now_ms() // MS_PER_DAY)
    return day.isoformat()


@pytest.mark.parametrize("path", ["/admin/settlement", "/admin/settlement.csv"])
def test_settlement_needs_sign_in(server: LiveServer, path: str) -> None:
    response = httpx.get(server.url + path, follow_redirects=False, timeout=30)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=")


def test_settlement_page_and_csv(console: Console, platform: Platform, new_wallet: Any) -> None:
    wallet, other = new_wallet(balance="100.00"), new_wallet(balance="100.00")
    assert wallet.money("withdraw", "s-1", "12.50")[0] == 200
    assert wallet.money("confirmWithdrawal", "s-1", "12.50")[0] == 200
    assert wallet.money("withdraw", "s-2", "3.00")[0] == 200
    assert wallet.money("rollbackWithdrawal", "s-2")[0] == 200
    assert other.money("deposit", "o-1", "2.00")[0] == 200
    assert other.money("confirmDeposit", "o-1", "2.00")[0] == 200
    day = today(platform)

    page = console.get("/admin/settlement", params={"partner": wallet.username, "from": day})
    assert page.status_code == 200
    assert 'data-testid="settlement"' in page.text
    assert "12.50 XAG" in page.text and "3.00 XAG" in page.text
    assert other.username not in page.text.split("<table")[1]

    exported = console.get("/admin/settlement.csv", params={"partner": wallet.username})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows == [
        {
            "partner": wallet.username,
            "date": day,
            "currency": "XAG",
            "withdrawals_confirmed_count": "1",
            "withdrawals_confirmed_amount": "12.50",
            "withdrawals_rolled_back_count": "1",
            "withdrawals_rolled_back_amount": "3.00",
            "deposits_confirmed_count": "0",
            "deposits_confirmed_amount": "0.00",
            "deposits_rolled_back_count": "0",
            "deposits_rolled_back_amount": "0.00",
            "net_amount": "12.50",
        }
    ]
    # Every partner: one line each, the deposit's net negative.
    everyone = console.get("/admin/settlement.csv", params={"from": day, "to": day})
    by_partner = {row["partner"]: row for row in csv.DictReader(io.StringIO(everyone.text))}
    assert by_partner[other.username]["net_amount"] == "-2.00"
    assert by_partner[wallet.username]["net_amount"] == "12.50"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": "2026-13-01"}, "YYYY-MM-DD"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "before"),
        ({"from": "2026-01-01", "to": "2026-03-01"}, "31 days"),
        ({"partner": "no-such-partner"}, "No partner"),
    ],
)
def test_bad_filters_are_explained(console: Console, params: dict[str, str], says: str) -> None:
    page = console.get("/admin/settlement", params=params)
    assert page.status_code == 400 and says in page.text
    assert console.get("/admin/settlement.csv", params=params).status_code == 400
