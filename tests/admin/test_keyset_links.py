"""The console's lists follow their *Older →* links (keyset cursors) over HTTP, on both
databases, and refuse a cursor that does not parse."""

from __future__ import annotations

import html
import re
from typing import Any

from tests.admin.conftest import Console

_OLDER = re.compile(r'<a href="\?([^"]*)" rel="next">Older')


def test_transaction_list_follows_its_older_links(console: Console, new_wallet: Any) -> None:
    wallet = new_wallet(balance="1000.00")
    mm_ids = [f"kp-{i}" for i in range(57)]
    for mm in mm_ids:
        assert wallet.money("withdraw", mm, "1.00")[0] == 200
    seen: list[str] = []
    query = f"partner={wallet.username}"
    for _ in range(5):
        page = console.get(f"/admin/transactions?{query}").text
        seen += [mm for mm in re.findall(r">(kp-\d+)</a>", page)]
        older = _OLDER.search(page)
        if older is None:
            break
        query = html.unescape(older.group(1))
        assert "after=" in query and "partner=" in query
    assert sorted(seen) == sorted(mm_ids) and len(seen) == len(set(seen))
    assert "← Newest" in page

    refused = console.get("/admin/audit", params={"after": "not-a-cursor"})
    assert refused.status_code == 400 and "not a page cursor" in refused.text
    listed = console.get("/admin/transactions", params={"after": "x"}).text
    assert "not a page cursor" in listed
