"""Staff REST endpoint for the risk team's tooling: read and merge the risk configuration (SPEC §6)."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from core.api import inputs
from core.api.auth import IsStaff
from core.api.base import HouseAPIView
from core.api.openapi import BAD_REQUEST, ErrorSerializer
from risk.api.serializers import RiskConfigSerializer
from risk.services.configure import risk_configuration, risk_configure


class RiskConfigView(HouseAPIView):
    permission_classes = [IsStaff]
    rate_group, rate = "admin_risk", "60/m"

    @extend_schema(
        responses={200: RiskConfigSerializer, 400: BAD_REQUEST, 401: ErrorSerializer, 403: ErrorSerializer},
        summary="The effective risk configuration (every threshold of the five walls)",
    )
    def get(self, request):
        return Response(risk_configuration())

    @extend_schema(
        request=RiskConfigSerializer,
        responses={200: RiskConfigSerializer, 400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer},
        summary="Merge a partial risk configuration; applies from the next trade",
        description=(
            "Every key is optional. Unknown keys, wrong types, negative amounts and scores outside [0, 1] are refused "
            "(400, code invalid_risk_config) and nothing changes. A new tier needs all three limits; "
            '`{"markets": {"<id>": null}}` removes a market\'s own cap; null operator limits mean no limit.'
        ),
    )
    def patch(self, request):
        patch = inputs.require_object(request.data)
        config = risk_configure(patch=patch, actor=f"staff:{request.user.user.get_username()}")
        return Response(config)
