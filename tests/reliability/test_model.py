"""The model-based test of ``tests/integration/test_model_based`` at its CI size, with its figures
recorded for ``qwallet verify`` (examples, steps per example, Wallet API calls, model checks).

The state machine, its rules and its invariants are those of the integration module; this module
only runs it once per backend and counts. Sizes: ``QWALLET_MODEL_EXAMPLES`` /
``QWALLET_MODEL_STEPS`` (defaults in the integration module).
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, Platform
from tests.integration import test_model_based as model
from tests.reliability.harness import record_result

pytestmark = [
    pytest.mark.reliability,
    # The plain test run already runs the state machine (tests/integration/test_model_based.py);
    # running it a second time only pays off when its figures are being recorded.
    pytest.mark.skipif(
        not os.environ.get("QWALLET_VERIFY_RESULTS"),
        reason="runs in tests/integration/test_model_based.py; counted only under qwallet verify",
    ),
]


def test_model_based_at_ci_size(
    server: LiveServer, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = "sqlite" if platform.settings.database_url.startswith("sqlite") else "postgres"
    counts = {"calls": 0, "views": 0}
    send = httpx.Client.send
    view = platform.players

    def counting_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> Any:
        counts["calls"] += 1
        return send(self, request, **kwargs)

    def counting_view(player_ids: list[str]) -> list[dict[str, Any]]:
        counts["views"] += len(player_ids)
        return view(player_ids)

    monkeypatch.setattr(httpx.Client, "send", counting_send)
    monkeypatch.setattr(platform, "players", counting_view)
    started = time.monotonic()
    failures = 0
    try:
        model.test_wallet_api_against_model(server, platform)
    except Exception:
        failures = 1
        raise
    finally:
        record_result(
            "model-based (Hypothesis state machine)",
            backend,
            runs=model.EXAMPLES,
            operations=counts["calls"],
            faults=0,
            failures=failures,
            # each invariant pass compares available, held, pendingIn and status of a wallet
            invariant_checks=4 * counts["views"],
            examples=model.EXAMPLES,
            steps=model.STEPS,
            calls=counts["calls"],
            seconds=round(time.monotonic() - started, 1),
        )
