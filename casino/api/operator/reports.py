"""GET operator/reports/daily (SPEC §13): the operator's daily figures as JSON or a streamed CSV."""

import csv
import datetime
import io
import re

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api.auth import IsOperator, OperatorKeyAuthentication
from core.api.base import HouseAPIView
from core.api.openapi import ErrorSerializer
from core.errors import HouseError, invalid, missing_fields
from core.money import money
from reports.selectors import MAX_DAYS, DailyFigures, daily_report

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CSV_COLUMNS = ["date", "currency", "trades", "players", "stakes", "saleProceeds", "payouts", "refunds", "reversals", "ggr"]


class DailyReportDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    currency = serializers.CharField()
    trades = serializers.IntegerField()
    players = serializers.IntegerField(help_text="Distinct players who traded that day")
    stakes = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    saleProceeds = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    payouts = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    refunds = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    reversals = serializers.DecimalField(
        max_digits=20, decimal_places=2, coerce_to_string=False, help_text="What reversals and debt recoveries took back (positive)"
    )
    ggr = serializers.DecimalField(
        max_digits=20, decimal_places=2, coerce_to_string=False, help_text="stakes - saleProceeds - payouts - refunds + reversals"
    )


class DailyReportSerializer(serializers.Serializer):
    days = DailyReportDaySerializer(many=True)


def _day(params, name: str) -> datetime.date:
    value = params.get(name)
    if not isinstance(value, str) or not DATE_RE.match(value):
        raise invalid(name, f"Invalid {name}: expected YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise invalid(name, f"Invalid {name}: expected YYYY-MM-DD") from None


def _range(params) -> tuple[datetime.date, datetime.date]:
    if params.get("from") is None or params.get("to") is None:
        raise missing_fields()
    start, end = _day(params, "from"), _day(params, "to")
    if end < start:
        raise HouseError("Invalid range: to is before from", code="invalid_range")
    if (end - start).days + 1 > MAX_DAYS:
        raise HouseError(f"Invalid range: at most {MAX_DAYS} days", code="invalid_range")
    return start, end


def _wants_csv(request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("json", "csv"):
            raise invalid("format", "Invalid format: json or csv")
        return fmt == "csv"
    return "text/csv" in request.headers.get("Accept", "")


def _values(day: DailyFigures) -> list:
    return [
        day.date.isoformat(),
        day.currency,
        day.trades,
        day.players,
        money(day.stakes),
        money(day.sale_proceeds),
        money(day.payouts),
        money(day.refunds),
        money(day.reversals),
        money(day.ggr),
    ]


def _csv_lines(days: list[DailyFigures]):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in [CSV_COLUMNS, *(_values(day) for day in days)]:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


class DailyReportView(HouseAPIView):
    authentication_classes = [OperatorKeyAuthentication]
    permission_classes = [IsOperator]
    rate_group, rate = "operator_reports", "120/m"

    @extend_schema(
        summary="Daily report: trades, players, stakes, sale proceeds, payouts, refunds, reversals and GGR per UTC day and currency",
        description=(
            "UTC days from `from` to `to` inclusive, at most 366; days without activity are omitted. "
            "`ggr = stakes - saleProceeds - payouts - refunds + reversals`. `Accept: text/csv` or `format=csv` "
            "streams the same rows as CSV with a header row. Read from the read replica when one is configured."
        ),
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=True, description="First UTC day, YYYY-MM-DD"),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True, description="Last UTC day, YYYY-MM-DD (at most 365 days after from)"),
            OpenApiParameter("format", str, enum=["json", "csv"], required=False, description="csv: same as Accept: text/csv"),
        ],
        responses={
            (200, "application/json"): DailyReportSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="date,currency,trades,players,stakes,...,ggr"),
            400: ErrorSerializer,
        },
    )
    def get(self, request):
        start, end = _range(request.query_params)
        csv_wanted = _wants_csv(request)
        # Read before answering: a database error is a clean error response, not a truncated stream.
        days = daily_report(operator_id=request.user.operator.pk, start=start, end=end)
        if csv_wanted:
            response = StreamingHttpResponse(_csv_lines(days), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="daily-{start.isoformat()}-{end.isoformat()}.csv"'
            return response
        return Response({"days": [dict(zip(CSV_COLUMNS, _values(day), strict=True)) for day in days]})
