"""Browser security shared by the player pages and the admin console.

- One signed session cookie (Starlette's ``SessionMiddleware``, itsdangerous): ``HttpOnly``,
  ``SameSite=Lax``, ``Secure`` whenever the public URL is HTTPS. The player's id lives under
  ``player_id``, the operator's name under ``operator``; neither page set trusts the other's key.
- CSRF: a random token per browser session, rendered into every form and required on every
  state-changing request (``require_csrf``), compared in constant time.
- The secret key comes from ``QWALLET_SECRET_KEY``; ``qwallet serve`` creates and keeps one next to
  the embedded database when none is configured, so sign-ins survive restarts and every worker
  process shares it.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 12 * 60 * 60


def csrf_token(request: Request) -> str:
    """The browser session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def require_csrf(request: Request) -> None:
    """Refuse a state-changing request whose CSRF token is missing or wrong (HTTP 403)."""
    expected = request.session.get("csrf")
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
        # Every form handler reads this same parsed form: refuse U+0000 once, here, before any
        # field reaches a query (PostgreSQL cannot store it).
        if any(isinstance(field, str) and "\x00" in field for field in form.values()):
            raise HTTPException(400, "Form fields must not contain U+0000.")
    if not isinstance(expected, str) or not given or not hmac.compare_digest(expected, given):
        raise HTTPException(403, "Missing or invalid CSRF token; reload the page and try again.")


def load_or_create_secret_key(path: Path) -> str:
    """A persistent random key in ``path`` (mode 0600), created when missing."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key)
    return key
