"""Admin console fixtures: an operator account and a signed-in browser-like HTTP client."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qwallet.service import operators
from tests.conftest import LiveServer, Platform

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


class Console:
    """An HTTP client with a cookie jar, signed in as one operator."""

    def __init__(self, server: LiveServer, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.client = httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)

    def sign_in(self) -> httpx.Response:
        token = csrf_of(self.client.get("/admin/login").text)
        return self.client.post(
            "/admin/login",
            data={"csrf_token": token, "username": self.username, "password": self.password},
        )

    def csrf(self) -> str:
        return csrf_of(self.client.get("/admin/").text)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self.client.post(path, data={"csrf_token": self.csrf(), **(data or {})}, **kw)

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def operator_account(platform: Platform) -> tuple[str, str]:
    name = f"op-{secrets.token_hex(3)}"
    issued = platform.run(operators.create_operator(platform.store, name, platform.clock.now_ms()))
    return issued.username, issued.password


@pytest.fixture
def console(server: LiveServer, operator_account: tuple[str, str]) -> Iterator[Console]:
    signed_in = Console(server, *operator_account)
    response = signed_in.sign_in()
    assert response.status_code == 303 and response.headers["location"] == "/admin/"
    yield signed_in
    signed_in.close()
