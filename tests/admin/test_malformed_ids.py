"""Outside strings where a transaction id is expected get the answer of an unknown id.

On PostgreSQL the ids are ``uuid`` columns (migration 0014): a string that is not a UUID, sent
to the database, would fail the statement (500). Each entry point that takes one from outside
(the console's transaction page and resolve form, its list cursor, the resolution log, the
operator's resolve command, the partner listing's cursor) checks it first; the answers are the
same on SQLite, which stores text.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from qwallet.admin import queries
from qwallet.service import holds
from qwallet.service.partners import OperatorError
from tests.admin.conftest import Console
from tests.conftest import LiveServer, Platform


def malformed(real: str) -> list[str]:
    """Strings an attacker or a typo sends instead of ``real`` (a generated id)."""
    return [
        "none",
        "x' OR '1'='1",
        real.upper(),  # PostgreSQL would read it as the same uuid; SQLite finds nothing
        real.replace("-", ""),
        "{" + real + "}",
        real + "0",
        real[:-1] + "g",
        real[:-1],
        "",  # the resolver's functions get it; the console's routes cannot (a 404 of routing)
        "0" * 200,
        "é" * 36,
    ]


@pytest.fixture
def pending_id(new_wallet: Any) -> str:
    wallet = new_wallet(balance="10.00")
    status, body = wallet.money("withdraw", "bad-ids-1", "1.00")
    assert status == 200, body
    return str(body["qwTransactionId"])


def test_console_pages_answer_404(console: Console, pending_id: str) -> None:
    assert console.get(f"/admin/transactions/{pending_id}").status_code == 200
    for bad in malformed(pending_id):
        if not bad:
            continue
        path = f"/admin/transactions/{quote(bad, safe='')}"
        assert console.get(path).status_code == 404, bad
        answer = console.post(path + "/resolve", {"decision": "rollback", "reason": "typo"})
        assert answer.status_code == 404, bad
    # Still pending: none of them reached the hold.
    assert "pending" in console.get(f"/admin/transactions/{pending_id}").text


def test_console_list_cursor_with_a_bad_id_is_refused(
    console: Console, platform: Platform, pending_id: str
) -> None:
    now_ms = platform.clock.now_ms() + 1
    good = console.get("/admin/transactions", params={"after": f"{now_ms}_{pending_id}"})
    assert good.status_code == 200 and "not a page cursor" not in good.text
    for bad in malformed(pending_id):
        if not bad:
            continue
        page = console.get("/admin/transactions", params={"after": f"{now_ms}_{bad}"})
        assert page.status_code == 200, bad
        assert "not a page cursor" in page.text, bad


def test_the_functions_behind_them(platform: Platform, pending_id: str) -> None:
    db = platform.store
    assert platform.run(queries.exists(db, "transaction", pending_id))
    for bad in malformed(pending_id):
        assert not platform.run(queries.exists(db, "transaction", bad)), bad
        assert platform.run(queries.transaction_partner_id(db, bad)) is None, bad
        assert platform.run(holds.resolutions(db, qw_transaction_id=bad)) == [], bad
        with pytest.raises(OperatorError, match="no transaction"):
            platform.run(queries.transaction_detail(db, bad))
        with pytest.raises(OperatorError, match="no transaction"):
            platform.run(
                holds.resolve_by_operator(
                    db, bad, "rollback", "typo", operator="ops", now_ms=platform.clock.now_ms()
                )
            )


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def test_partner_listing_cursor_with_a_bad_id_is_refused(
    server: LiveServer, new_wallet: Any
) -> None:
    wallet = new_wallet(balance="10.00")
    status, body = wallet.money("withdraw", "bad-cursor-1", "1.00")
    assert status == 200, body
    real = str(body["qwTransactionId"])
    auth = (wallet.username, wallet.password)
    with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
        params = {"fromMs": "0", "toMs": "9", "cursor": _cursor(f"5.{real}")}
        assert client.get("/partner/transactions", params=params).status_code == 200
        for bad in malformed(real):
            if not bad or len(bad) > 64 or not bad.isascii():
                continue  # refused by the cursor's own syntax already
            params["cursor"] = _cursor(f"5.{bad}")
            response = client.get("/partner/transactions", params=params)
            assert response.status_code == 400, (bad, response.text)
            assert response.json()["errorCode"] == 101, bad
            assert "cursor" in response.json()["errorDescription"], bad
