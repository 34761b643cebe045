"""POST /api/casino/resolve (staff): resolve, void or reverse (SPEC §12) a market, with the reference
document's response."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from core.api import inputs
from core.api.auth import IsStaff
from core.api.base import HouseAPIView
from core.api.openapi import ErrorSerializer
from core.api.pagination import keyset_page, page_params
from core.api.rendering import iso
from core.money import money
from settlement.models import ProposalStatus, ResolutionProposal, SettlementAction
from settlement.services.decide import market_settle
from settlement.services.proposals import proposal_confirm, proposal_reject
from settlement.services.reversal import settlement_reverse


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


def reversal_body(reversal) -> dict:
    return {
        "success": True,
        "marketId": reversal.settlement.market_id,
        "action": "reverse",
        "totalPositions": reversal.total_positions,
        "totalReversed": money(reversal.total_reversed),
        "totalUncollected": money(reversal.total_uncollected),
    }


_RESOLVE_RESPONSE = inline_serializer(
    "ResolveResponse",
    {
        "success": serializers.BooleanField(),
        "marketId": serializers.CharField(),
        "outcome": serializers.CharField(required=False),
        "totalPositions": serializers.IntegerField(),
        "totalWinners": serializers.IntegerField(required=False),
        "totalPayout": serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=False, required=False),
        "casinoProfit": serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=False, required=False),
        "action": serializers.ChoiceField(["reverse"], required=False, help_text="Reversals only"),
        "totalReversed": serializers.DecimalField(
            max_digits=16,
            decimal_places=2,
            coerce_to_string=False,
            required=False,
            help_text="Reversals: taken back so far (the reversal goes on in the background; repeat the request to see it grow)",
        ),
        "totalUncollected": serializers.DecimalField(
            max_digits=16, decimal_places=2, coerce_to_string=False, required=False, help_text="Reversals: left as player debts so far"
        ),
    },
)


class ResolveView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "resolve", "10/m"

    @extend_schema(
        request=inline_serializer(
            "ResolveRequest",
            {
                "marketId": serializers.CharField(),
                "outcome": serializers.ChoiceField(["yes", "no"], required=False),
                "action": serializers.ChoiceField(["resolve", "void", "reverse"], required=False),
                "reason": serializers.CharField(required=False, help_text="Required to reverse"),
            },
        ),
        responses={200: _RESOLVE_RESPONSE, 400: ErrorSerializer, 404: ErrorSerializer},
        summary="Resolve, void or reverse (the latest settlement) a market (staff); payouts and reversals run in the background",
    )
    def post(self, request):
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "marketId")
        market_id = inputs.market_id_field(data["marketId"])
        action = inputs.choice_field(data.get("action") or "resolve", "action", ("resolve", "void", "reverse"))
        if action == "reverse":
            inputs.require_fields(data, "reason")
            reason = inputs.text_field(data["reason"], "reason")
            reversal = settlement_reverse(market_id=market_id, reason=reason, requested_by=request.user.user)
            return Response(reversal_body(reversal))
        outcome = None
        if action == "resolve":
            inputs.require_fields(data, "outcome")
            outcome = inputs.choice_field(data["outcome"], "outcome", ("yes", "no"))
        reason = inputs.text_field(data.get("reason"), "reason")
        settlement = market_settle(market_id=market_id, action=action, outcome=outcome, reason=reason, requested_by=request.user.user)
        return Response(settlement_body(settlement))


def proposal_body(proposal) -> dict:
    return {
        "id": str(proposal.pk),
        "marketId": proposal.market_id,
        "title": proposal.market.title,
        "action": proposal.action,
        "outcome": proposal.outcome,
        "status": proposal.status,
        "evidence": proposal.evidence,
        "seenAt": iso(proposal.seen_at),
        "decidedAt": iso(proposal.decided_at) if proposal.decided_at else None,
        "decidedBy": proposal.decided_by or None,
        "reason": proposal.reason or None,
    }


_PROPOSAL_FIELDS = {
    "id": serializers.UUIDField(),
    "marketId": serializers.CharField(),
    "title": serializers.CharField(),
    "action": serializers.ChoiceField(["resolve", "void"]),
    "outcome": serializers.ChoiceField(["yes", "no"], allow_null=True),
    "status": serializers.ChoiceField(ProposalStatus.values),
    "evidence": serializers.DictField(),
    "seenAt": serializers.DateTimeField(),
    "decidedAt": serializers.DateTimeField(allow_null=True),
    "decidedBy": serializers.CharField(allow_null=True),
    "reason": serializers.CharField(allow_null=True),
}
_PROPOSAL = inline_serializer("ResolutionProposal", _PROPOSAL_FIELDS)


def _proposal_list():
    return inline_serializer("ResolutionProposalItem", _PROPOSAL_FIELDS, many=True)


class ResolutionsView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "admin_resolutions", "120/m"

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=list(ProposalStatus.values), description="Default: proposed"),
            OpenApiParameter("limit", int, description="Default 100, max 1000"),
            OpenApiParameter("cursor", str),
        ],
        responses={
            200: inline_serializer(
                "ResolutionProposalPage", {"proposals": _proposal_list(), "nextCursor": serializers.CharField(allow_null=True)}
            ),
            400: ErrorSerializer,
        },
        summary="Resolution proposals from the market-data feed (staff)",
    )
    def get(self, request):
        status = inputs.choice_field(request.query_params.get("status", ProposalStatus.PROPOSED), "status", tuple(ProposalStatus.values))
        page = keyset_page(
            ResolutionProposal.objects.filter(status=status).select_related("market"),
            ordering=("-seen_at", "-id"),
            params=page_params(request.query_params),
            scope="admin.resolutions",
        )
        return Response({"proposals": [proposal_body(p) for p in page.items], "nextCursor": page.next_cursor})


class ResolutionConfirmView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "resolve", "10/m"

    @extend_schema(request=None, responses={200: _RESOLVE_RESPONSE, 400: ErrorSerializer, 404: ErrorSerializer},
                   summary="Confirm a resolution proposal: settles the market exactly as POST resolve")  # fmt: skip
    def post(self, request, proposal_id: str):
        proposal_id = inputs.uuid_field(proposal_id, "id")
        user = request.user.user
        settlement = proposal_confirm(proposal_id=proposal_id, actor=f"staff:{user.get_username()}", requested_by=user)
        return Response(settlement_body(settlement))


class ResolutionRejectView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "admin_resolutions", "120/m"

    @extend_schema(
        request=inline_serializer("ResolutionRejectRequest", {"reason": serializers.CharField()}),
        responses={200: _PROPOSAL, 400: ErrorSerializer, 404: ErrorSerializer},
        summary="Reject a resolution proposal (with a reason)",
    )
    def post(self, request, proposal_id: str):
        proposal_id = inputs.uuid_field(proposal_id, "id")
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "reason")
        reason = inputs.text_field(data["reason"], "reason")
        proposal = proposal_reject(proposal_id=proposal_id, actor=f"staff:{request.user.user.get_username()}", reason=reason)
        return Response(proposal_body(ResolutionProposal.objects.select_related("market").get(pk=proposal.pk)))
