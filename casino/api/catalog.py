"""The player-facing catalogue (SPEC §11): the lobby a casino front end renders. No authentication,
or a player's token to see that player's own spread."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from casino import presenters, selectors
from casino.services.exposure import exposure_books
from casino.services.markets import casino_settings
from core.api import inputs
from core.api.auth import PlayerPrincipal
from core.api.base import HouseAPIView
from core.api.openapi import ErrorSerializer
from core.api.pagination import page_params
from core.api.rendering import iso
from core.errors import HouseError
from core.money import plain
from risk.services.assessment import pricing_view

CATEGORY_RE = r"^[a-z0-9][a-z0-9 _&/.-]{0,63}$"


class _SideSerializer(serializers.Serializer):
    mid = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    bid = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    ask = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)


class CatalogMarketSerializer(serializers.Serializer):
    marketId = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField()
    yesLabel = serializers.CharField()
    noLabel = serializers.CharField()
    endDate = serializers.DateTimeField(allow_null=True)
    status = serializers.CharField()
    tradeable = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True)
    yes = _SideSerializer(allow_null=True)
    no = _SideSerializer(allow_null=True)
    spreadPct = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    liquidity = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False, allow_null=True)
    priceUpdatedAt = serializers.DateTimeField(allow_null=True)


class CatalogPageSerializer(serializers.Serializer):
    markets = CatalogMarketSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class _PointSerializer(serializers.Serializer):
    t = serializers.DateTimeField()
    mid = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)


class CatalogMarketDetailSerializer(CatalogMarketSerializer):
    history = _PointSerializer(many=True)


def _pricing(request, markets) -> dict:
    """What catalog_market needs to price as a quote would: the caller's tier and sharp widening,
    the pricing rules, and per market its exposure book and cap (the skew), books in one query."""
    view = pricing_view(player=request.user.player if isinstance(request.user, PlayerPrincipal) else None)
    books = exposure_books(market_ids=[m.pk for m in markets])
    common = {"casino": casino_settings(), "rules": view.rules, "tier_extra": view.tier_extra, "sharp_extra": view.sharp_extra}
    return {m.pk: {**common, "book": books.get(m.pk), "cap": view.market_cap(m.pk)} for m in markets}


class CatalogView(HouseAPIView):
    permission_classes = [AllowAny]
    rate_group, rate = "catalog", "60/m"

    @extend_schema(
        parameters=[
            OpenApiParameter("category", str, description="Only this category (lowercase)"),
            OpenApiParameter("q", str, description="Words in the title"),
            OpenApiParameter("limit", int, description="Default 50, max 200"),
            OpenApiParameter("cursor", str, description="nextCursor of the previous page"),
        ],
        operation_id="catalog_list",
        responses={200: CatalogPageSerializer, 400: ErrorSerializer},
        summary="The listed markets with the house's prices (a player's token: that player's own spread)",
    )
    def get(self, request):
        params = request.query_params
        category = params.get("category") or None
        if category is not None:
            category = inputs.pattern_field(category.lower(), "category", CATEGORY_RE)
        query = inputs.text_field(params.get("q"), "q", max_length=100).strip() or None
        page = selectors.catalogue_page(category=category, query=query, params=page_params(params, default_limit=50, max_limit=200))
        pricing, now = _pricing(request, page.items), timezone.now()
        return Response(
            {
                "markets": [presenters.catalog_market(m, now=now, **pricing[m.pk]) for m in page.items],
                "nextCursor": page.next_cursor,
            }
        )


class CatalogMarketView(HouseAPIView):
    permission_classes = [AllowAny]
    rate_group, rate = "catalog", "60/m"

    @extend_schema(
        operation_id="catalog_market",
        responses={200: CatalogMarketDetailSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        summary="One market of the catalogue, with 24 h of YES mids at 5-minute points",
    )
    def get(self, request, market_id: str):
        market = selectors.catalogue_market(market_id=inputs.market_id_field(market_id))
        if market is None:
            raise HouseError("Market not found", code="market_not_found", status=404)
        now = timezone.now()
        body = presenters.catalog_market(market, now=now, **_pricing(request, [market])[market.pk])
        points = selectors.price_points(market_id=market.pk, since=now - timedelta(hours=24))
        body["history"] = [{"t": iso(p.at), "mid": plain(p.yes_mid)} for p in points]
        return Response(body)
