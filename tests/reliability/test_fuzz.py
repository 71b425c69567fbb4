"""schemathesis against the served ``/openapi.json`` of a live server (both backends).

All of schemathesis's checks run, plus ``no_unexpected_error``: no HTTP 500 and no errorCode 100
for any input. One deliberate configuration: the document marks amounts ≤ 0 invalid
(``exclusiveMinimum: 0``), yet the service answers them with 102 on HTTP 200 — the documented
rule that business errors travel as 200. So the negative-data check also accepts 200, and
``negative_data_refused`` insists that such a 200 is an error body, never a success.

Positive cases use a live session token half of the time, so the state machine is fuzzed too,
not only the session check. CI: a few hundred cases in all; QWALLET_LONG=1: ≥ 1,000 per operation.
"""

from __future__ import annotations

import base64
import random
import time
from collections import Counter
from typing import Any

import pytest

schemathesis = pytest.importorskip(
    "schemathesis",
    reason="schemathesis is in the test extra: pip install -e '.[test]'",
)

import hypothesis  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from qwallet.service import api_keys  # noqa: E402
from qwallet.settings import Settings  # noqa: E402
from tests.conftest import LiveServer, Platform  # noqa: E402
from tests.reliability.harness import record_result, scale  # noqa: E402

pytestmark = pytest.mark.reliability

EXAMPLES_PER_OPERATION = scale(25, 1000)
# Statuses with which the service refuses data the document calls invalid: 200 carries the
# business error body (102 for amounts ≤ 0, 120 for unknown currencies, 110 for tokens, …).
REFUSAL_STATUSES = ["200", "400", "401", "403", "404", "405", "413", "415", "422", "429"]


@schemathesis.check
def no_unexpected_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """Nothing may fail unexpectedly: no HTTP 500, no errorCode 100, for any input."""
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:300]}"
    payload = _json(response)
    if isinstance(payload, dict):
        assert payload.get("errorCode") != 100, f"errorCode 100: {response.text[:300]}"
    return None


@schemathesis.check
def negative_data_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """Data the document calls invalid is refused: 4xx, or an error body on 200 — never a
    success answer (nothing is applied)."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.NEGATIVE:
        return None
    if response.status_code == 200 and case.path.startswith("/wallet/"):
        payload = _json(response)
        assert isinstance(payload, dict) and "errorCode" in payload, (
            f"invalid input answered as a success: {case.body!r} -> {response.text[:300]}"
        )
    return None


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    # The fuzzer calls with one token many times a second, and sends many made-up Authorization
    # headers from one address: not what the limiters are tested for (test_security is).
    return Settings(
        database_url=database_url,
        rate_limit_partner_rps=1e6,
        rate_limit_partner_burst=1_000_000,
        rate_limit_player_rps=1e6,
        rate_limit_player_burst=1_000_000,
        auth_failure_rps=1e6,
        auth_failure_burst=1_000_000,
    )


@pytest.fixture(scope="module")
def fuzz_credentials(platform: Platform) -> dict[str, Any]:
    username, password = platform.create_partner()
    tokens = [
        platform.create_session(platform.create_player("100000.00"), username) for _ in range(3)
    ]
    key = platform.run(api_keys.create_api_key(platform.store, "fuzz", platform.clock.now_ms()))
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"basic": f"Basic {basic}", "bearer": f"Bearer {key}", "tokens": tokens}


@pytest.fixture(scope="module")
def api_schema(server: LiveServer) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "generation": {"database": "none"},
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSAL_STATUSES}},
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


def _prepare(case: Any, credentials: dict[str, Any], positive: bool) -> dict[str, str]:
    headers = dict(case.headers or {})
    if case.path.startswith(("/wallet/", "/partner/")):
        headers.setdefault("Authorization", credentials["basic"])
        if positive and isinstance(case.body, dict) and random.random() < 0.5:
            case.body["token"] = random.choice(credentials["tokens"])
    elif case.path == "/api/sessions":
        headers.setdefault("Authorization", credentials["bearer"])
    return headers


def _runner(
    strategy: Any,
    name: str,
    mode: GenerationMode,
    counts: Counter[str],
    base_url: str,
    credentials: dict[str, Any],
    checks: list[Any],
    examples: int,
) -> Any:
    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case: Any) -> None:
        counts[name] += 1
        headers = _prepare(case, credentials, mode is GenerationMode.POSITIVE)
        case.call_and_validate(base_url=base_url, headers=headers, additional_checks=checks)

    return run


def test_openapi_document_against_the_live_server(
    api_schema: Any, server: LiveServer, fuzz_credentials: dict[str, Any], backend: str
) -> None:
    """EXAMPLES_PER_OPERATION cases per operation, split over positive and negative data.

    (Driven through schemathesis's Python API and hypothesis directly: its pytest plugin does
    not load under pytest 9.)"""
    counts: Counter[str] = Counter()
    failures: list[str] = []
    checks = [no_unexpected_error, negative_data_refused]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        # A GET without a body has no negative space (only an optional X-Request-Id header).
        has_body = operation.method.upper() == "POST"
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE][: 2 if has_body else 1]
        for mode in modes:
            name = f"{operation.method.upper()} {operation.path} {mode.value}"
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception as error:  # an operation without negative space, e.g. GET /healthz
                counts[name] += 0
                print(f"[fuzz] {name}: no strategy ({error})")
                continue

            run = _runner(
                strategy, name, mode, counts, server.url, fuzz_credentials, checks,
                EXAMPLES_PER_OPERATION // len(modes),
            )  # fmt: skip
            started = time.monotonic()
            try:
                run()
            except Exception as error:
                failures.append(f"{name}: {error}"[:2000])
            print(f"[fuzz] {name}: {counts[name]} cases in {time.monotonic() - started:.1f} s")
    total = sum(counts.values())
    record_result(
        "schemathesis (all checks + no 500 / no 100)",
        backend,
        runs=len(operations),
        operations=total,
        faults=0,
        failures=len(failures),
        invariant_checks=total,
    )
    assert not failures, "\n\n".join(failures)
    assert total >= len(operations), counts
    assert not failures, "\n\n".join(failures)
