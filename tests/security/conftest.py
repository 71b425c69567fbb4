"""Security regression tests (docs/security.md): one test per attack that once got through.

Each test drives a real server on loopback (``tests.conftest``: a fresh database per module on
SQLite and on PostgreSQL) the way an attacker would, and asserts the refusal and that nothing
changed.

Under ``qwallet verify`` every test here adds one record to the security matrix of
``docs/reliability.md``: the finding it covers (the first line of its docstring), the backend, the
HTTP requests the test sent (counted at the client: httpx transports in this process) and whether
the attack was refused (the test passed). ``@pytest.mark.finding("N")`` names the finding of
docs/security.md a test covers (``H`` for the hardening list).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.reliability.harness import record_result

_sent = {"requests": 0}


@pytest.fixture(autouse=True)
def _count_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Count every request the test sends through httpx (sync and async transports)."""
    _sent["requests"] = 0
    sync_send = httpx.HTTPTransport.handle_request
    async_send = httpx.AsyncHTTPTransport.handle_async_request

    def counted(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        _sent["requests"] += 1
        return sync_send(self, request)

    async def counted_async(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        _sent["requests"] += 1
        return await async_send(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", counted)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", counted_async)
    yield


def _finding(item: pytest.Item) -> str:
    """``@pytest.mark.finding("5")``: the finding of docs/security.md the test covers."""
    marker = item.get_closest_marker("finding")
    return str(marker.args[0]) if marker and marker.args else "-"


def _attack(item: pytest.Item) -> str:
    name = item.name.split("[", 1)[0].removeprefix("test_")
    return name.replace("_", " ")


def _backend(item: pytest.Item) -> str:
    callspec: Any = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return str(params.get("backend", "-"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or report.skipped:
        return
    record_result(
        "security",
        _backend(item),
        operations=_sent["requests"],
        faults=0,
        failures=0 if report.passed else 1,
        invariant_checks=0,
        echo=False,  # a report hook runs outside the test's output capture
        module=item.module.__name__.rsplit(".", 1)[-1] if item.module else "",
        case=_attack(item),
        finding=_finding(item),
    )
