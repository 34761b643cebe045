"""POST /api/casino/resolve (staff): resolve or void a market, with the reference document's response."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from core.api import inputs
from core.api.auth import IsStaff
from core.api.base import HouseAPIView
from core.money import money
from settlement.models import SettlementAction
from settlement.services.decide import market_settle


def settlement_body(settlement) -> dict:
    if settlement.action == SettlementAction.VOID:
        return {
            "success": True,
            "marketId": settlement.market_id,
            "totalPositions": settlement.total_positions,
            "totalPayout": money(settlement.total_payout),
            "casinoProfit": 0,
        }
    return {
        "success": True,
        "marketId": settlement.market_id,
        "outcome": settlement.outcome,
        "totalPositions": settlement.total_positions,
        "totalWinners": settlement.total_winners,
        "totalPayout": money(settlement.total_payout),
        "casinoProfit": money(settlement.casino_profit),
    }


class ResolveView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "resolve", "10/m"

    @extend_schema(
        request=inline_serializer(
            "ResolveRequest",
            {
                "marketId": serializers.CharField(),
                "outcome": serializers.ChoiceField(["yes", "no"], required=False),
                "action": serializers.ChoiceField(["resolve", "void"], required=False),
                "reason": serializers.CharField(required=False),
            },
        ),
        responses={
            200: inline_serializer(
                "ResolveResponse",
                {
                    "success": serializers.BooleanField(),
                    "marketId": serializers.CharField(),
                    "outcome": serializers.CharField(required=False),
                    "totalPositions": serializers.IntegerField(),
                    "totalWinners": serializers.IntegerField(required=False),
                    "totalPayout": serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=False),
                    "casinoProfit": serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=False),
                },
            )
        },
        summary="Resolve or void a market (staff); payouts are made by a background task",
    )
    def post(self, request):
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "marketId")
        market_id = inputs.market_id_field(data["marketId"])
        action = inputs.choice_field(data.get("action") or "resolve", "action", ("resolve", "void"))
        outcome = None
        if action == "resolve":
            inputs.require_fields(data, "outcome")
            outcome = inputs.choice_field(data["outcome"], "outcome", ("yes", "no"))
        reason = inputs.text_field(data.get("reason"), "reason")
        settlement = market_settle(market_id=market_id, action=action, outcome=outcome, reason=reason, requested_by=request.user.user)
        return Response(settlement_body(settlement))
