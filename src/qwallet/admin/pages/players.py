"""The console's player pages: the list, one player, block and adjust."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from qwallet.admin import queries
from qwallet.admin.base import ConsoleBase, NotFound, _message
from qwallet.domain.errors import WalletError
from qwallet.domain.money import format_amount, parse_operator_amount
from qwallet.service import audit, players
from qwallet.service.partners import OperatorError


class PlayerPages(ConsoleBase):
    async def players(self, request: Request) -> Response:
        # Not cut short: a search longer than any id or nickname is refused with its reason
        # (queries.MAX_SEARCH_CHARS), not silently searched for as its first characters.
        query = request.query_params.get("q", "")
        after = self._cursor(request)
        rows = await queries.search_players(self.db, query, after)
        return self.render(
            request,
            "players.html",
            q=query.strip(),
            rows=rows[: queries.PAGE_SIZE],
            after=after,
            next_cursor=queries.next_players_cursor(rows, query),
            query={"q": query.strip()} if query.strip() else {},
        )

    async def player(self, request: Request) -> Response:
        player_id = request.path_params["player_id"]
        await self._require_player(player_id)
        info = await players.show_player(self.db, self.currencies, player_id)
        transactions, adjustments = await queries.player_activity(self.db, player_id)
        entries = await audit.entries(self.db, target=player_id, limit=20)
        return self.render(
            request,
            "player.html",
            player=info,
            transactions=transactions,
            adjustments=adjustments,
            audit_entries=entries,
        )

    async def block(self, request: Request) -> Response:
        player_id = request.path_params["player_id"]
        await self._require_player(player_id)
        form = await self._form(request)
        blocked = form.get("blocked") == "1"
        try:
            await players.set_blocked(
                self.db,
                player_id,
                blocked,
                now_ms=self.clock.now_ms(),
                operator=self._who(request),
                reason=form.get("reason"),
            )
        except players.PlayerNotFound as error:
            raise NotFound(str(error)) from None
        self.flash(request, f"Player {'blocked' if blocked else 'unblocked'}.")
        return self.back(f"/admin/players/{quote(player_id, safe='')}")

    async def adjust(self, request: Request) -> Response:
        player_id = request.path_params["player_id"]
        await self._require_player(player_id)
        back = self.back(f"/admin/players/{quote(player_id, safe='')}")
        form = await self._form(request)
        reason = form.get("reason", "")
        try:
            info = await players.show_player(self.db, self.currencies, player_id)
            currency = self.currencies[info["currencyCode"]]
            if not reason:
                raise OperatorError("An adjustment needs a reason.")
            amount_minor = parse_operator_amount(
                form.get("amount", ""), currency, allow_negative=True
            )
            await players.adjust_balance(
                self.db,
                player_id,
                currency,
                amount_minor,
                reason,
                self._who(request),
                self.clock.now_ms(),
            )
        except (OperatorError, WalletError, ValueError) as error:
            self.flash(request, f"Not adjusted: {_message(error)}", "error")
            return back
        amount_text = format_amount(amount_minor, currency)
        self.flash(request, f"Adjusted by {amount_text} {currency.code}.")
        return back
