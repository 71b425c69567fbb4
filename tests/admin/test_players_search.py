"""The console's players search over real HTTP, on both databases: the exact player id, then
the nicknames that start with the text in any case, by (lowered nickname, id), in keyset pages
that are disjoint and together complete; LIKE's wildcards and the range's edges are plain
characters; bad input and a tampered cursor are clear 400 pages, and nobody but a signed-in
operator reaches it."""

from __future__ import annotations

import html
import re
import secrets

import httpx
import pytest

from qwallet.admin import queries
from qwallet.service.partners import OperatorError
from tests.admin.conftest import Console
from tests.conftest import LiveServer, Platform

_NEXT = re.compile(r'<a href="\?([^"]*)" rel="next">Next')
_IDS = re.compile(r'<a href="/admin/players/[^"]*" class="mono">([^<]*)</a>')


def add_players(platform: Platform, players: list[tuple[str, str]]) -> None:
    """(id, nickname) wallets, straight into the table (the search reads nothing else)."""

    async def go() -> None:
        async with platform.store.transaction() as tx:
            for player_id, nickname in players:
                await tx.execute(
                    "INSERT INTO players (id, nickname, currency, language, status,"
                    " available_minor, held_minor, pending_in_minor, limit_day,"
                    " day_withdrawn_minor, created_at_ms) VALUES ($1, $2, 'XAG', 'en', 'active',"
                    " 0, 0, 0, 0, 0, $3)",
                    player_id,
                    nickname,
                    platform.clock.now_ms(),
                )

    platform.run(go())


def pages(console: Console, text: str) -> list[list[str]]:
    """Every page of the search, following its *Next →* links."""
    found: list[list[str]] = []
    query = httpx.QueryParams({"q": text})
    for _ in range(20):
        page = console.get(f"/admin/players?{query}")
        assert page.status_code == 200, page.text
        found.append([html.unescape(i) for i in _IDS.findall(page.text)])
        link = _NEXT.search(page.text)
        if link is None:
            return found
        query = httpx.QueryParams(html.unescape(link.group(1)))
        assert query["q"] == text.strip() and query["after"]
    raise AssertionError("more than 20 pages")


def test_prefix_pages_in_any_case_by_nickname_then_id(console: Console, platform: Platform) -> None:
    tag = secrets.token_hex(3)
    # 120 nicknames of one prefix in mixed case, some shared by two wallets (ties go by id),
    # then others around them that must not be found.
    wanted = [
        (f"{tag}-{i:03d}", f"{'Zq' if i % 2 else 'zQ'}{tag}{i % 100:03d}") for i in range(120)
    ]
    others = [
        (f"{tag}-o1", f"Zp{tag}"),  # just before the prefix
        (f"{tag}-o2", f"Zr{tag}"),  # just after it
        (f"{tag}-o3", f"x zq{tag}"),  # holds the text, does not start with it
    ]
    add_players(platform, wanted + others)
    found = pages(console, f"  ZQ{tag.upper()} ")
    assert [len(page) for page in found] == [50, 50, 20]
    flat = [player_id for page in found for player_id in page]
    assert len(set(flat)) == len(flat)  # disjoint
    expected = sorted(wanted, key=lambda row: (row[1].lower(), row[0]))
    assert flat == [player_id for player_id, _ in expected]  # complete, in order
    first = console.get("/admin/players", params={"q": f"zq{tag}"}).text
    assert "starts with" in first  # the hint says what is searched
    assert "← First" not in first and "Next →" in first


def test_the_exact_id_comes_first_and_once(console: Console, platform: Platform) -> None:
    tag = secrets.token_hex(3)
    # A player whose id is the text and whose nickname starts with it too.
    add_players(
        platform,
        [(f"id{tag}", f"id{tag} himself")]
        + [(f"{tag}-{i:02d}", f"ID{tag}-{i:02d}") for i in range(60)],
    )
    found = pages(console, f"id{tag}")
    flat = [player_id for page in found for player_id in page]
    assert flat[0] == f"id{tag}" and flat.count(f"id{tag}") == 1
    assert sorted(flat[1:]) == [f"{tag}-{i:02d}" for i in range(60)]
    assert [len(page) for page in found] == [50, 11]
    # An id alone: exactly that player, not a prefix of ids.
    assert pages(console, f"{tag}-0") == [[]]
    assert pages(console, f"{tag}-07") == [[f"{tag}-07"]]


@pytest.mark.parametrize(
    "nickname, text, other",
    [
        ("{t}%x", "{t}%", "{t}zx"),  # LIKE's any-run
        ("{t}_y", "{t}_", "{t}ay"),  # LIKE's any-one
        ("{t}\\z", "{t}\\", "{t}z"),  # LIKE's escape
        ("{t}'; --", "{t}'", "{t}x"),  # a quote is data
        ("{t}\U0010ffff", "{t}", "n{t}"),  # the last code point, at the range's end
    ],
)
def test_metacharacters_are_literal(
    console: Console, platform: Platform, nickname: str, text: str, other: str
) -> None:
    tag = "m" + secrets.token_hex(3)
    add_players(
        platform,
        [(f"{tag}-hit", nickname.format(t=tag)), (f"{tag}-miss", other.format(t=tag))],
    )
    assert pages(console, text.format(t=tag)) == [[f"{tag}-hit"]]


def test_bad_input_and_tampered_cursors_are_clear_errors(
    console: Console, platform: Platform
) -> None:
    tag = secrets.token_hex(3)
    add_players(platform, [(f"{tag}-{i:02d}", f"bad{tag}{i:02d}") for i in range(60)])
    for params, message in [
        ({"q": "x" * 201}, "at most 200 characters"),
        ({"q": "a\x01b"}, "control characters"),
        ({"q": f"bad{tag}", "after": "nobody"}, "not a page cursor"),
        ({"q": f"bad{tag}", "after": "' OR 1=1 --"}, "not a page cursor"),
        ({"q": f"bad{tag}", "after": "x" * 5000}, "not a page cursor"),
        ({"after": "nobody"}, "not a page cursor"),  # a search cursor on the list
    ]:
        page = console.get("/admin/players", params=params)
        assert page.status_code == 400, (params, page.status_code)
        assert message in html.unescape(page.text), params
    # Another player's id as the cursor: the rest of this search after that player's place,
    # never rows outside it.
    page = console.get("/admin/players", params={"q": f"bad{tag}", "after": f"{tag}-55"}).text
    assert [html.unescape(i) for i in _IDS.findall(page)] == [f"{tag}-{i}" for i in range(56, 60)]
    assert "← First" in page


def test_only_a_signed_in_operator_searches(server: LiveServer) -> None:
    anonymous = httpx.get(server.url + "/admin/players?q=a", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/admin/login?next=")
    # Nothing under the partner or player APIs answers a players search.
    for path in ("/api/players?q=a", "/partner/players?q=a", "/admin/players.json?q=a"):
        response = httpx.get(server.url + path, follow_redirects=False)
        assert response.status_code in (401, 403, 404, 405), (path, response.status_code)


def test_prefix_end_is_the_least_string_after_the_prefix() -> None:
    assert queries.prefix_end("ab") == "ac"
    assert queries.prefix_end("a\U0010ffff") == "b"
    assert queries.prefix_end("\U0010ffff") is None
    assert queries.prefix_end("a\ud7ff") == "a\ue000"  # over the surrogates
    with pytest.raises(OperatorError):
        queries._search_text("\x7f")


def test_a_nickname_as_stored_is_found_whatever_its_letters(
    console: Console, platform: Platform
) -> None:
    # The text is lowered by the database, as the index's nicknames are (SQLite folds A-Z only,
    # PostgreSQL every letter its locale knows): lowered in Python instead, "ÉVA" would become
    # "éva" and miss SQLite's "Éva".
    tag = secrets.token_hex(3)
    add_players(platform, [(f"{tag}-e", f"ÉVA{tag} Straße"), (f"{tag}-k", f"カタ{tag}")])
    assert pages(console, f"ÉVA{tag} Str") == [[f"{tag}-e"]]
    assert pages(console, f"Éva{tag} STRASSE") == [[]]  # folding, not German spelling rules
    assert pages(console, f"カタ{tag}") == [[f"{tag}-k"]]
