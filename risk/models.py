"""Risk limits. This stage holds the exposure-cap wall; the other walls add their models here."""

from decimal import Decimal

from django.db import models
from django.db.models import Q


class RiskSettings(models.Model):
    """House-wide risk thresholds (single row, pk 1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    default_market_exposure_cap = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("50000"),
        help_text="Worst-case loss allowed per market unless the market has its own cap.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "risk_settings"
        verbose_name = "risk settings"
        verbose_name_plural = "risk settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="risk_settings_singleton"),
            models.CheckConstraint(condition=Q(default_market_exposure_cap__gte=0), name="risk_default_cap_nonnegative"),
        ]

    def __str__(self) -> str:
        return "Risk settings"


class MarketRiskLimit(models.Model):
    market = models.OneToOneField("casino.Market", on_delete=models.CASCADE, primary_key=True, related_name="risk_limit")
    exposure_cap = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        db_table = "risk_market_limits"
        constraints = [models.CheckConstraint(condition=Q(exposure_cap__gte=0), name="risk_market_cap_nonnegative")]
