"""The console's integration-check button: ``POST /admin/partners/{name}/check``.

The same check as ``qwallet partners check`` (``qwallet.studio_check``), run by a signed-in
operator (CSRF-checked like every console action) and shown as a page with the report's table.
A production partner gets only the read-only Query Withdrawal rows: the console sends no forged
callbacks to it, whatever the form says. Each run is audited as ``partner.check``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from qwallet.service.partners import OperatorError
from qwallet.studio_check import CheckRefused, DataChoice, check_partner, record_check
from qwallet.studio_check.report import html_table, summary

if TYPE_CHECKING:
    from qwallet.admin.console import AdminConsole

__all__ = ["studio_check_routes"]

MAX_ID_CHARS = 64


def _optional(form: dict[str, str], key: str) -> str | None:
    value = form.get(key, "")[:MAX_ID_CHARS]
    return value or None


def studio_check_routes(console: AdminConsole) -> list[BaseRoute]:
    async def run(request: Request) -> Response:
        name = request.path_params["name"]
        form = await console._form(request)
        choice = DataChoice(
            order=_optional(form, "order"),
            confirmed=_optional(form, "confirmed"),
            rolled_back=_optional(form, "rolled_back"),
            pending=_optional(form, "pending"),
        )
        query_only = form.get("query_only") == "1"
        try:
            result = await check_partner(
                console.db,
                console.settings.currency_registry,
                console.clock,
                name,
                choice,
                query_only=query_only,
            )
        except (OperatorError, CheckRefused) as error:
            return console.render(request, "error.html", 400, message=str(error))
        await record_check(console.db, console._who(request), result, console.clock.now_ms())
        return console.render(
            request,
            "studio_check.html",
            partner=name,
            result=result,
            table=html_table(result),
            verdict=summary(result),
        )

    return [Route("/partners/{name}/check", console._action(run), methods=["POST"])]
