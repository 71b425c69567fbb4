"""The demo studio (qwallet.demo.game, built on the kit) passes the integration check: every row, over
real HTTP on loopback, against the real platform on both databases; and the CLI around it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest

from qwallet.clock import SystemClock
from qwallet.demo.game import DemoConfig, create_demo_game
from qwallet.partner import Money, PartnerKit, SQLiteStore, WalletClient
from qwallet.studio_check import CheckResult, check_partner
from qwallet.studio_check.report import html_page, text_table
from tests.conftest import LiveServer, Platform
from tests.demo.conftest import serve

from .conftest import (
    CALLBACK_SECRET,
    QUERY_AUTH,
    SandboxPartner,
    create_sandbox_partner,
    outcomes,
    pay_and_deliver,
    point_partner_at,
    run_check,
)

QWALLET = str(Path(sys.executable).parent / "qwallet")


@dataclass
class DemoStudio:
    partner: SandboxPartner
    config: DemoConfig
    url: str
    token: str


@pytest.fixture(scope="module")
def demo_studio(
    server: LiveServer, platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoStudio]:
    partner = create_sandbox_partner(platform)
    config = DemoConfig(
        platform_url=server.url,
        username=partner.username,
        password=partner.password,
        callback_secret=CALLBACK_SECRET,
        query_username=QUERY_AUTH[0],
        query_password=QUERY_AUTH[1],
        data_dir=tmp_path_factory.mktemp("demo-studio"),
        bonus_cooldown_s=0,
    )
    with serve(create_demo_game(config)) as url, httpx.Client(base_url=url, timeout=30) as http:
        point_partner_at(platform, partner.name, url, "/query-withdrawal")
        player_id = platform.create_player("60.00")
        token = platform.create_session(player_id, partner.name)
        # A real-money pack, the studio's way: it issues the order, the platform delivers it.
        issued = http.post("/api/orders", json={"token": token, "packId": "gems.small"})
        assert issued.status_code == 200, issued.text
        message = bytes(msgspec.json.decode(issued.content, type=dict[str, msgspec.Raw])["message"])
        assert pay_and_deliver(platform, player_id, token, message) == "delivered"
        # Withdrawals the studio makes: a confirmed purchase, and a refused one it rolled back.
        bought = http.post("/api/buy", json={"token": token, "itemId": "crown"})
        assert bought.status_code == 200, bought.text
        poor = http.post("/api/buy", json={"token": token, "itemId": "shield"})
        assert poor.json()["error"] == "insufficient_funds"
        yield DemoStudio(partner, config, url, token)


def check_while_a_purchase_is_running(
    platform: Platform, server: LiveServer, studio: DemoStudio
) -> CheckResult:
    """Hold one withdrawal of the studio's own kit open (its follow-up still running, as when a
    player is mid-purchase) and run the check meanwhile: the studio must answer PENDING."""

    async def scenario() -> CheckResult:
        client = WalletClient(server.url, studio.partner.username, studio.partner.password)
        kit = PartnerKit(client, SQLiteStore(studio.config.kit_db_path), id_prefix="held-")
        try:
            async with kit.withdrawal(studio.token, Money(Decimal("1.00"), "XAG"), "Held"):
                return await check_partner(
                    platform.store,
                    platform.settings.currency_registry,
                    SystemClock(),
                    studio.partner.name,
                )
        finally:
            await kit.aclose()

    return platform.run(scenario())


def test_the_demo_studio_passes_every_row(
    demo_studio: DemoStudio, platform: Platform, server: LiveServer, tmp_path: Path
) -> None:
    result = check_while_a_purchase_is_running(platform, server, demo_studio)
    assert outcomes(result) == {
        key: "pass"
        for key in (
            "callback.valid", "callback.bad_sign", "callback.bad_signature", "callback.stale_ts",
            "callback.replay", "callback.shift", "callback.unknown_order", "query.confirmed",
            "query.rolled_back", "query.pending", "query.unknown", "query.bad_credentials",
        )
    }, text_table(result)  # fmt: skip
    assert result.passed(strict=True)
    table = text_table(result)
    assert "MISS" not in table and "12 passed, 0 missed, 0 skipped" in table
    page = html_page(result)
    assert page.count('<tr class="pass"') == 12 and "<script" not in page
    # The studio refused what it must refuse, in its own words (the answers are in the table).
    answered = {row.key: row.answered for row in result.rows}
    assert (
        answered["callback.bad_sign"].startswith("403")
        and "bad_sign" in answered["callback.bad_sign"]
    )
    assert "missing_signature" in answered["callback.shift"]
    assert "not_issued" in answered["callback.unknown_order"]
    assert answered["query.bad_credentials"].startswith("401")


def test_a_production_partner_is_refused_unless_query_only(
    demo_studio: DemoStudio, platform: Platform
) -> None:
    production = create_sandbox_partner(platform, sandbox=False)
    from qwallet.studio_check import CheckRefused

    with pytest.raises(CheckRefused, match="not a sandbox partner"):
        run_check(platform, production.name)
    point_partner_at(platform, production.name, demo_studio.url, "/query-withdrawal")
    result = run_check(platform, production.name, query_only=True)
    assert {row.key for row in result.rows} == {
        "query.confirmed", "query.rolled_back", "query.pending", "query.unknown",
        "query.bad_credentials",
    }  # fmt: skip
    # It made no withdrawal at this studio: those rows are skipped, the others pass.
    assert outcomes(result)["query.unknown"] == "pass"
    assert outcomes(result)["query.confirmed"] == "skip"


def qwallet(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QWALLET_DATABASE_URL": platform.settings.database_url}
    return subprocess.run(  # our own command, fixed arguments
        [QWALLET, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_table_html_and_exit_codes(
    demo_studio: DemoStudio, platform: Platform, tmp_path: Path
) -> None:
    report = tmp_path / "check.html"
    name = demo_studio.partner.name
    # No purchase is running now: the pending row is skipped (exit 0), --strict makes it fail.
    ran = qwallet(platform, "partners", "check", name, "--html", str(report))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "PASS  valid callback" in ran.stdout and "SKIP  Query: pending" in ran.stdout
    assert "11 passed, 0 missed, 1 skipped" in ran.stdout
    assert report.read_text().count('<tr class="pass"') == 11
    strict = qwallet(platform, "partners", "check", name, "--strict", "--json")
    assert strict.returncode == 1
    payload = msgspec.json.decode(strict.stdout)
    assert payload["partner"] == name and len(payload["rows"]) == 12
    # A named withdrawal that is not in the named state: a clear error, nothing sent.
    wrong = qwallet(platform, "partners", "check", name, "--pending", "nope")
    assert wrong.returncode == 2 and "no withdrawal 'nope'" in wrong.stderr
    production = create_sandbox_partner(platform, sandbox=False)
    refused = qwallet(platform, "partners", "check", production.name)
    assert refused.returncode == 2 and "not a sandbox partner" in refused.stderr
    assert "--query-only" in refused.stderr


def test_json_callbacks_pass_too(demo_studio: DemoStudio, platform: Platform) -> None:
    """With the partner's callbacks in JSON, the vectors are JSON too (numbers as their text; a
    shifted serverId that is no JSON number is sent as a string)."""

    async def set_format(body_format: str) -> None:
        async with platform.store.transaction() as tx:
            await tx.execute(
                "UPDATE partners SET callback_format = $1 WHERE name = $2",
                body_format,
                demo_studio.partner.name,
            )

    platform.run(set_format("json"))
    try:
        result = run_check(platform, demo_studio.partner.name)
    finally:
        platform.run(set_format("form"))
    assert not result.misses, text_table(result)
    assert [row.key for row in result.skips] == ["query.pending"]
    assert "missing_signature" in {r.key: r.answered for r in result.rows}["callback.shift"]
