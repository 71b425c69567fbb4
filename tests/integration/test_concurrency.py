"""Concurrent calls on one wallet against the live server, on each backend.

The database, not Python, must keep these right (design §1): over-subscription of one balance,
storms of identical calls, and a confirm racing a rollback of the same pending transaction.
"""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer, Platform
from tests.integration import _helpers_concurrency as scenarios


def test_oversubscribed_withdrawals_hold_exactly_the_balance(
    server: LiveServer, platform: Platform
) -> None:
    scenarios.oversubscribed_withdrawals(platform, [server.url], k=37, n=100)


def test_concurrent_deposits_stop_at_the_maximum_balance(
    server: LiveServer, platform: Platform
) -> None:
    scenarios.deposits_at_the_ceiling(platform, [server.url], k=10, n=60)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_duplicate_storm_executes_once(server: LiveServer, platform: Platform, kind: str) -> None:
    scenarios.duplicate_storm(platform, [server.url], kind, n=20)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_confirm_racing_rollback_has_one_winner(
    server: LiveServer, platform: Platform, kind: str
) -> None:
    scenarios.confirm_rollback_race(platform, [server.url], kind, rounds=50)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_original_racing_its_rollback_never_leaves_a_hold(
    server: LiveServer, platform: Platform, kind: str
) -> None:
    scenarios.original_racing_rollback(platform, [server.url], kind, rounds=50)


@pytest.mark.parametrize("kind", ["withdrawal", "deposit"])
def test_one_id_from_two_players_executes_for_one(
    server: LiveServer, platform: Platform, kind: str
) -> None:
    scenarios.one_id_two_players(platform, [server.url], kind, n=20)
