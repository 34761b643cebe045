"""The operator's players (SPEC §13): GET operator/players, GET and PATCH operator/players/{playerId}.

``playerId`` is the operator's own player id; another operator's player is 404, never data.
"""

from decimal import Decimal

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from casino.models import PlayerStatus, WalletMode
from casino.services.player_controls import operator_player, operator_players_page, player_controls_set
from core.api import inputs
from core.api.auth import IsOperator, OperatorKeyAuthentication
from core.api.base import HouseAPIView
from core.api.openapi import ErrorSerializer
from core.api.pagination import page_params
from core.api.rendering import iso
from core.errors import HouseError, invalid
from core.money import money

TIER_RE = r"[a-z0-9_\-]{1,32}"
WIRE_LIMITS = {"maxStakePerTrade": "max_stake_per_trade", "maxDailyStake": "max_daily_stake", "maxDailyLoss": "max_daily_loss"}
ZERO = Decimal("0")


# -- the wire ------------------------------------------------------------------------------------


def player_body(player, *, operator) -> dict:
    """A player as its operator sees it; ``player`` carries casino.services.player_controls' figures."""
    internal = operator.wallet_mode == WalletMode.INTERNAL
    return {
        "userId": str(player.pk),
        "playerId": player.external_id,
        "tier": player.tier,
        "status": player.status,
        "limits": {wire: _money_or_none(getattr(player, name)) for wire, name in WIRE_LIMITS.items()},
        "totalWagered": money(player.total_wagered),
        "debt": money(player.debt_amount or ZERO),
        "balance": money(player.wallet_balance or ZERO) if internal else None,
        "openExposure": money(player.open_exposure),
        "createdAt": iso(player.created_at),
    }


def _money_or_none(value: Decimal | None) -> Decimal | None:
    return money(value) if value is not None else None


def _controls(data) -> dict:
    """The PATCH body as model field names: every field optional, unknown keys refused, a limit
    null removes it."""
    data = inputs.require_object(data)
    _no_unknown(data, ("status", "tier", "limits"))
    changes = {}
    if "status" in data:
        changes["status"] = inputs.choice_field(data["status"], "status", tuple(PlayerStatus.values))
    if "tier" in data:
        changes["tier"] = inputs.pattern_field(data["tier"], "tier", TIER_RE)
    if "limits" in data:
        limits = data["limits"]
        if not isinstance(limits, dict):
            raise invalid("limits")
        _no_unknown(limits, tuple(WIRE_LIMITS))
        for wire, name in WIRE_LIMITS.items():
            if wire in limits:
                changes[name] = _limit(limits[wire], wire)
    return changes


def _no_unknown(data: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise HouseError(f"Unknown field: {unknown[0][:64]}", code="unknown_field")


def _limit(value, field: str) -> Decimal | None:
    if value is None:
        return None
    amount = inputs.decimal_field(value, field)
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise invalid(field)
    return amount.quantize(Decimal("0.01"))


# -- OpenAPI shapes --------------------------------------------------------------------------------


def _money_field(**kwargs):
    return serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False, **kwargs)


class PlayerLimitsSerializer(serializers.Serializer):
    maxStakePerTrade = _money_field(allow_null=True, required=False, help_text="Largest stake of one buy; null = no limit")
    maxDailyStake = _money_field(allow_null=True, required=False, help_text="Largest sum of buy stakes in a UTC day; null = no limit")
    maxDailyLoss = _money_field(
        allow_null=True, required=False, help_text="Largest stakes minus sale proceeds in a UTC day; null = no limit"
    )


class OperatorPlayerSerializer(serializers.Serializer):
    userId = serializers.UUIDField(help_text="The house's id of the player")
    playerId = serializers.CharField(help_text="The operator's own player id")
    tier = serializers.CharField()
    status = serializers.ChoiceField(PlayerStatus.values)
    limits = PlayerLimitsSerializer()
    totalWagered = _money_field()
    debt = _money_field(help_text="What the player owes the house after a reversed settlement")
    balance = _money_field(allow_null=True, help_text="Internal wallets; null when the operator holds the money (S2S)")
    openExposure = _money_field(help_text="Payout owed on the player's open positions if all won, minus their cost basis")
    createdAt = serializers.DateTimeField()


class OperatorPlayersResponseSerializer(serializers.Serializer):
    players = OperatorPlayerSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class PlayerControlsRequestSerializer(serializers.Serializer):
    status = serializers.ChoiceField(PlayerStatus.values, required=False)
    tier = serializers.CharField(required=False, help_text="A tier of the house's risk configuration")
    limits = PlayerLimitsSerializer(required=False)


PLAYER_ID = OpenApiParameter("playerId", str, location=OpenApiParameter.PATH, description="The operator's own player id")
PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, required=False, description="Rows per page, default 100, at most 1000"),
    OpenApiParameter("cursor", str, required=False, description="nextCursor of the previous page"),
    OpenApiParameter("status", str, enum=PlayerStatus.values, required=False),
    OpenApiParameter("tier", str, required=False),
]


# -- views -----------------------------------------------------------------------------------------


class OperatorPlayersView(HouseAPIView):
    authentication_classes = [OperatorKeyAuthentication]
    permission_classes = [IsOperator]
    rate_group, rate = "operator_players", "600/m"

    @extend_schema(
        operation_id="casino_operator_players_list",
        parameters=PAGE_PARAMETERS,
        responses={200: OperatorPlayersResponseSerializer, 400: ErrorSerializer},
        summary="The operator's players, newest first",
    )
    def get(self, request):
        query = request.query_params
        status = inputs.choice_field(query["status"], "status", tuple(PlayerStatus.values)) if query.get("status") else None
        tier = inputs.pattern_field(query["tier"], "tier", TIER_RE) if query.get("tier") else None
        operator = request.user.operator
        page = operator_players_page(operator=operator, params=page_params(query), status=status, tier=tier)
        return Response({"players": [player_body(p, operator=operator) for p in page.items], "nextCursor": page.next_cursor})


class OperatorPlayerView(HouseAPIView):
    authentication_classes = [OperatorKeyAuthentication]
    permission_classes = [IsOperator]
    rate_group, rate = "operator_players", "600/m"

    @extend_schema(
        parameters=[PLAYER_ID],
        responses={200: OperatorPlayerSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        summary="One of the operator's players, by the operator's own player id",
    )
    def get(self, request, playerId: str):
        operator = request.user.operator
        return Response(player_body(operator_player(operator=operator, external_id=playerId), operator=operator))

    @extend_schema(
        request=PlayerControlsRequestSerializer,
        parameters=[PLAYER_ID],
        responses={200: OperatorPlayerSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        summary="Block or unblock a player, set its tier and responsible-gambling limits (null removes one)",
    )
    def patch(self, request, playerId: str):
        changes = _controls(request.data)
        operator = request.user.operator
        player = player_controls_set(operator=operator, external_id=playerId, changes=changes)
        return Response(player_body(player, operator=operator))
