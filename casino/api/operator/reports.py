"""GET operator/reports/daily (SPEC §13): the operator's daily figures as JSON or a streamed CSV."""

import csv
import datetime
import io
import re
from decimal import Decimal

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
from reports.selectors import MAX_DAYS, DailyFigures, MonthlyFigures, daily_report, month_bounds, monthly_report, revenue_share

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CSV_COLUMNS = [
    "date", "currency", "trades", "players", "stakes", "saleProceeds", "payouts", "refunds", "reversals", "ggr",
    "operatorShare", "houseShare",
]  # fmt: skip
SHARE_HELP = (
    "operatorShare = ggr x the operator's share percent (operatorSharePct, at report time) / 100, rounded down to the cent "
    "(also when ggr is negative: the operator bears its share of a loss); houseShare = ggr - operatorShare"
)


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
    operatorShare = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False, help_text=SHARE_HELP)
    houseShare = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False, help_text="ggr - operatorShare")


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


def _values(day: DailyFigures, pct: Decimal) -> list:
    return [day.date.isoformat(), *_figures(day, pct)]


def _figures(row: DailyFigures | MonthlyFigures, pct: Decimal) -> list:
    """A report row's figures from the currency on, with the revenue share of its GGR (daily and monthly)."""
    operator_share, house_share = revenue_share(row.ggr, pct)
    return [
        row.currency, row.trades, row.players, money(row.stakes), money(row.sale_proceeds), money(row.payouts), money(row.refunds),
        money(row.reversals), money(row.ggr), money(operator_share), money(house_share),
    ]  # fmt: skip


def _csv_lines(days: list[DailyFigures], pct: Decimal):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in [CSV_COLUMNS, *(_values(day, pct) for day in days)]:
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
            "`ggr = stakes - saleProceeds - payouts - refunds + reversals`; " + SHARE_HELP + ". `Accept: text/csv` or `format=csv` "
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
        operator = request.user.operator
        days = daily_report(operator_id=operator.pk, start=start, end=end)
        pct = operator.operator_share_pct
        if csv_wanted:
            response = StreamingHttpResponse(_csv_lines(days, pct), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="daily-{start.isoformat()}-{end.isoformat()}.csv"'
            return response
        return Response({"days": [dict(zip(CSV_COLUMNS, _values(day, pct), strict=True)) for day in days]})


# ----- issue 14 (SPEC §16): GET operator/reports/monthly?month=YYYY-MM -------------------------------

MONTH_RE = re.compile(r"^\d{4}-\d{2}$")
MONTHLY_FIELDS = [
    "currency", "trades", "players", "stakes", "saleProceeds", "payouts", "refunds", "reversals", "ggr", "operatorShare", "houseShare",
]  # fmt: skip


class MonthlyReportTotalSerializer(serializers.Serializer):
    currency = serializers.CharField()
    trades = serializers.IntegerField()
    players = serializers.IntegerField(help_text="Distinct players who traded in the month")
    stakes = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    saleProceeds = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    payouts = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    refunds = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    reversals = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    ggr = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False)
    operatorShare = serializers.DecimalField(
        max_digits=20, decimal_places=2, coerce_to_string=False, help_text="Of the month's GGR: " + SHARE_HELP
    )
    houseShare = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=False, help_text="ggr - operatorShare")


class MonthlyReportSerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM, as asked")
    start = serializers.DateField(help_text="First UTC day of the month")
    end = serializers.DateField(help_text="Last UTC day of the month")
    operatorSharePct = serializers.DecimalField(
        max_digits=5, decimal_places=2, coerce_to_string=False, help_text="The operator's contract share of GGR, in percent, now"
    )
    totals = MonthlyReportTotalSerializer(many=True, help_text="One row per currency with activity")


def _month(params) -> datetime.date:
    value = params.get("month")
    if value is None:
        raise missing_fields()
    if not isinstance(value, str) or not MONTH_RE.match(value):
        raise invalid("month", "Invalid month: expected YYYY-MM")
    try:
        return datetime.date(int(value[:4]), int(value[5:]), 1)
    except ValueError:
        raise invalid("month", "Invalid month: expected YYYY-MM") from None


def _monthly_values(row: MonthlyFigures, pct: Decimal) -> dict:
    return dict(zip(MONTHLY_FIELDS, _figures(row, pct), strict=True))


class MonthlyReportView(HouseAPIView):
    authentication_classes = [OperatorKeyAuthentication]
    permission_classes = [IsOperator]
    rate_group, rate = "operator_reports", "120/m"

    @extend_schema(
        summary="Monthly report: the month's totals per currency and the revenue share",
        description=(
            "The UTC month's totals (the daily report's figures summed; players counted once in the month) with the "
            "operator's and the house's share of the month's GGR: " + SHARE_HELP + ". The share is computed on the month's "
            "GGR, so it may differ by a few cents from the sum of the daily rows' shares. Read from the read replica when "
            "one is configured."
        ),
        parameters=[OpenApiParameter("month", str, required=True, pattern=r"^\d{4}-\d{2}$", description="UTC month, YYYY-MM")],
        responses={200: MonthlyReportSerializer, 400: ErrorSerializer},
    )
    def get(self, request):
        month = _month(request.query_params)
        start, end = month_bounds(month)
        operator = request.user.operator
        pct = operator.operator_share_pct
        rows = monthly_report(operator_id=operator.pk, month=month)
        return Response(
            {
                "month": f"{month:%Y-%m}",
                "start": start.isoformat(),
                "end": end.isoformat(),
                "operatorSharePct": pct,
                "totals": [_monthly_values(row, pct) for row in rows],
            }
        )
