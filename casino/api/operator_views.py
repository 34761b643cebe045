"""Operator (X-Operator-Key) and staff (admin bearer token) endpoints."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from casino.api import schemas as s
from casino.models import Player
from casino.services.credentials import session_open
from casino.services.markets import reference_price_set
from core.api import inputs
from core.api.auth import IsOperator, IsStaff, OperatorKeyAuthentication
from core.api.base import HouseAPIView
from core.api.openapi import IDEMPOTENCY_HEADER, ErrorSerializer
from core.api.rendering import iso
from core.errors import HouseError
from core.money import money, plain
from wallets.services.transfers import wallet_adjust

CURRENCY_RE = r"^[A-Z]{3}$"


class OperatorSessionView(HouseAPIView):
    authentication_classes = [OperatorKeyAuthentication]
    permission_classes = [IsOperator]
    rate_group, rate = "operator_sessions", "600/m"

    @extend_schema(
        request=s.SessionRequestSerializer,
        responses={200: s.SessionResponseSerializer, 400: ErrorSerializer},
        summary="Open a player session (creates the player on first use)",
    )
    def post(self, request):
        import re

        data = inputs.require_object(request.data)
        inputs.require_fields(data, "playerId")
        player_id = data["playerId"]
        if not isinstance(player_id, str) or not (1 <= len(player_id) <= 128):
            raise inputs.invalid("playerId")
        currency = data.get("currency")
        if currency is not None and (not isinstance(currency, str) or not re.match(CURRENCY_RE, currency)):
            raise inputs.invalid("currency")
        operator = request.user.operator
        if currency is not None and currency != operator.currency:
            raise HouseError("Currency not supported by this operator", code="wrong_currency")
        tier = data.get("tier")
        if tier is not None and (not isinstance(tier, str) or not re.match(r"^[a-z0-9_\-]{1,32}$", tier)):
            raise inputs.invalid("tier")
        issued = session_open(operator=operator, external_player_id=player_id, currency=currency, tier=tier)
        return Response({"token": issued.token, "userId": str(issued.player.pk), "expiresAt": iso(issued.expires_at)})


class AdminBalanceView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "admin_balance", "60/m"

    @extend_schema(
        request=s.AdminBalanceRequestSerializer,
        responses={200: s.AdminBalanceResponseSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        summary="Staff balance adjustment (deposit or withdraw)",
    )
    def post(self, request):
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "targetUserId", "amount", "action")
        target = inputs.uuid_field(data["targetUserId"], "targetUserId")
        amount = inputs.amount_field(data["amount"], places=2)
        action = inputs.choice_field(data["action"], "action", ("deposit", "withdraw"))
        description = inputs.text_field(data.get("description"), "description")
        player = Player.objects.select_related("operator").filter(pk=target).first()
        if player is None:
            raise HouseError("User not found", code="user_not_found", status=404)
        actor = f"staff:{request.user.user.get_username()}"
        return self.run_idempotent(
            request,
            execute=lambda slot: wallet_adjust(
                player=player, amount=amount, action=action, description=description, actor=actor, idempotency=slot
            ),
            render_body=lambda change: {"success": True, "newBalance": money(change.balance_after)},
        )


class AdminPricesView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "admin_prices", "600/m"

    @extend_schema(
        request=s.AdminPriceRequestSerializer,
        responses={200: s.AdminPriceResponseSerializer, 400: ErrorSerializer},
        summary="Set the house reference price of a market",
    )
    def post(self, request):
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "marketId", "midPrice")
        market_id = inputs.market_id_field(data["marketId"])
        outcome = inputs.choice_field(data.get("outcome", "yes"), "outcome", ("yes", "no"))
        mid = inputs.mid_price_field(data["midPrice"])
        title = inputs.text_field(data.get("marketTitle"), "marketTitle")
        category = inputs.text_field(data.get("category"), "category", max_length=64)
        prices = reference_price_set(market_id=market_id, outcome=outcome, mid_price=mid, title=title, category=category)
        return Response({"success": True, "marketId": prices.market.pk, "yes": plain(prices.yes), "no": plain(prices.no)})
