"""The check against a studio that breaks one rule at a time: each break fails its row(s), and
the same studio with no break passes every row. Real HTTP on loopback, both databases."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from qwallet.studio_check import DataChoice, runner
from tests.conftest import LiveServer, Platform
from tests.demo.conftest import serve

from .broken_studio import BREAKS, Studio
from .conftest import (
    CALLBACK_SECRET,
    QUERY_AUTH,
    SandboxPartner,
    create_sandbox_partner,
    misses,
    outcomes,
    run_check,
    stage,
)


@dataclass
class Setup:
    partner: SandboxPartner
    studio: Studio
    cp_order_id: str


@pytest.fixture(scope="module")
def setup(server: LiveServer, platform: Platform) -> Iterator[Setup]:
    partner = create_sandbox_partner(platform)
    studio = Studio(CALLBACK_SECRET, QUERY_AUTH)
    with serve(studio.app()) as url:
        cp_order_id = stage(server, platform, partner, studio, url)
        yield Setup(partner, studio, cp_order_id)


def test_the_studio_without_a_break_passes_every_row(setup: Setup, platform: Platform) -> None:
    setup.studio.breaks = set()
    result = run_check(platform, setup.partner.name)
    assert set(outcomes(result).values()) == {"pass"}, [r for r in result.rows]
    assert len(result.rows) == 12
    assert result.passed(strict=True)
    # The check re-sent the delivered order; nothing else was delivered.
    assert setup.studio.delivered == {setup.cp_order_id}


@pytest.mark.parametrize("switch", sorted(BREAKS))
def test_each_break_fails_its_row(setup: Setup, platform: Platform, switch: str) -> None:
    setup.studio.breaks = {switch}
    try:
        result = run_check(platform, setup.partner.name)
    finally:
        setup.studio.breaks = set()
    assert misses(result) == BREAKS[switch], [r for r in result.rows if r.outcome != "pass"]
    assert not result.passed()


def test_named_data_and_query_only(setup: Setup, platform: Platform) -> None:
    choice = DataChoice(
        order=setup.cp_order_id,
        confirmed="bs-confirmed",
        rolled_back="bs-rolled-back",
        pending="bs-pending",
    )
    result = run_check(platform, setup.partner.name, choice=choice, query_only=True)
    assert [row.key for row in result.rows] == [
        "query.confirmed", "query.rolled_back", "query.pending", "query.unknown",
        "query.bad_credentials",
    ]  # fmt: skip
    assert result.passed(strict=True)


def test_a_hanging_studio_misses_every_row_within_the_budget(
    setup: Setup, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "TIMEOUT_S", 0.3)
    monkeypatch.setattr(runner, "TOTAL_BUDGET_S", 1.0)
    setup.studio.breaks = {"hang"}
    started = time.monotonic()
    try:
        result = run_check(platform, setup.partner.name)
    finally:
        setup.studio.breaks = set()
    assert time.monotonic() - started < 3.0
    assert len(result.misses) == 12
    answers = [row.answered for row in result.rows]
    assert answers[0].startswith("no answer: ReadTimeout")
    assert answers[-1] == "not sent: the check's 1 s budget ran out"
