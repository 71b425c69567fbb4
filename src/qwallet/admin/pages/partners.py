"""The console's partner pages: the list, create, update, rotate and revoke credentials."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import partners as partner_admin
from qwallet.admin.base import MAX_FIELD_CHARS, ConsoleBase
from qwallet.domain.payment_methods import KNOWN_METHODS, SANDBOX_METHODS, split_methods
from qwallet.service.partners import OperatorError
from qwallet.web.security import CSRF_FIELD


class PartnerPages(ConsoleBase):
    async def partners(self, request: Request) -> Response:
        rows = await partner_admin.list_all(self.db)
        return self.render(
            request,
            "partners.html",
            rows=rows,
            ip_lists={row["name"]: json.loads(row["ip_allow"] or "[]") for row in rows},
            method_lists={row["name"]: split_methods(row["payment_methods"]) for row in rows},
            known_methods=KNOWN_METHODS,
            sandbox_methods=SANDBOX_METHODS,
            currency_codes=self.settings.currency_registry.codes(),
        )

    def _shown_once(self, request: Request, shown: partner_admin.ShownOnce) -> Response:
        return self.render(request, "secrets.html", shown=shown)

    @staticmethod
    async def _partner_form(request: Request) -> tuple[dict[str, str], list[str]]:
        """The partner form's text fields, and the payment methods ticked (a repeated field)."""
        form = await request.form()
        methods = [
            value.strip()[:MAX_FIELD_CHARS]
            for value in form.getlist("payment_methods")
            if isinstance(value, str) and value.strip()
        ][: len(KNOWN_METHODS) + 1]
        fields = {
            key: value.strip()[:MAX_FIELD_CHARS]
            for key, value in form.items()
            if isinstance(value, str) and key not in (CSRF_FIELD, "payment_methods")
        }
        return fields, methods

    async def create_partner(self, request: Request) -> Response:
        form, methods = await self._partner_form(request)
        try:
            shown = await partner_admin.create(
                self.db,
                self._who(request),
                form.get("name", ""),
                self.clock.now_ms(),
                display_name=form.get("display_name"),
                client_url=form.get("client_url"),
                callback_url=form.get("callback_url"),
                query_url=form.get("query_url"),
                query_username=form.get("query_username"),
                query_password=form.get("query_password"),
                ip_allow=partner_admin.split_cidrs(form.get("ip_allow", "")),
                currencies=self.settings.currency_registry,
                payment_currency=form.get("payment_currency"),
                sandbox=form.get("sandbox") == "1",
                payment_methods=methods,
                allow_http_callback=form.get("allow_http_callback") == "1",
            )
        except OperatorError as error:
            self.flash(request, f"Partner not created: {error}", "error")
            return self.back("/admin/partners")
        return self._shown_once(request, shown)

    async def update_partner(self, request: Request) -> Response:
        form, methods = await self._partner_form(request)
        name = request.path_params["name"]
        try:
            await partner_admin.update(
                self.db,
                self._who(request),
                name,
                self.clock.now_ms(),
                client_url=form.get("client_url"),
                callback_url=form.get("callback_url"),
                query_url=form.get("query_url"),
                query_username=form.get("query_username"),
                ip_allow=partner_admin.split_cidrs(form.get("ip_allow", "")),
                currencies=self.settings.currency_registry,
                payment_currency=form.get("payment_currency"),
                sandbox=form.get("sandbox") == "1",
                payment_methods=methods,
                allow_http_callback=form.get("allow_http_callback") == "1",
            )
            self.flash(request, f"Partner {name} updated.")
        except OperatorError as error:
            self.flash(request, f"Not updated: {error}", "error")
        return self.back("/admin/partners")

    async def rotate(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            shown = await partner_admin.rotate(
                self.db,
                self._who(request),
                request.path_params["name"],
                form.get("what", ""),
                self.clock.now_ms(),
            )
        except OperatorError as error:
            self.flash(request, str(error), "error")
            return self.back("/admin/partners")
        return self._shown_once(request, shown)

    async def revoke_old(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            count = await partner_admin.revoke_old(
                self.db, self._who(request), name, self.clock.now_ms()
            )
            self.flash(request, f"Revoked {count} old credential(s) of {name}.")
        except OperatorError as error:
            self.flash(request, str(error), "error")
        return self.back("/admin/partners")
