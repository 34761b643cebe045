"""Risk assessment called by the trade executor (step 3).

This stage implements wall 3, the per-market exposure cap: a ticket carries the cap and
reserves the trade's exposure atomically inside the trade's transaction. The other walls
(velocity, tier limits, sharp detection, operator limits) plug in here.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Subquery

from casino.services.exposure import exposure_apply
from risk.models import MarketRiskLimit, RiskSettings


def risk_settings() -> RiskSettings:
    row = RiskSettings.objects.filter(pk=1).first()
    if row is None:
        row, _ = RiskSettings.objects.get_or_create(pk=1)
    return row


def market_exposure_cap(*, market_id: str) -> Decimal:
    """The market's own cap if it has one, else the house default (one query)."""
    own = MarketRiskLimit.objects.filter(market_id=market_id).values("exposure_cap")[:1]
    row = RiskSettings.objects.filter(pk=1).annotate(own=Subquery(own)).values_list("own", "default_market_exposure_cap").first()
    if row is None:
        own_cap = MarketRiskLimit.objects.filter(market_id=market_id).values_list("exposure_cap", flat=True).first()
        return own_cap if own_cap is not None else risk_settings().default_market_exposure_cap
    return row[0] if row[0] is not None else row[1]


@dataclass(frozen=True)
class RiskTicket:
    market_id: str
    market_cap: Decimal
    spread_extra: Decimal = Decimal("0")

    def reserve_exposure(self, *, outcome: str, shares_delta: Decimal, cash_delta: Decimal, locked: bool = False) -> None:
        """Wall 3: take the trade's exposure on the market book, or raise 'Market exposure cap reached'.

        May raise ExposureNeedsLock (a ConcurrentUpdate): roll back, retry with locked=True."""
        exposure_apply(
            market_id=self.market_id, outcome=outcome, shares_delta=shares_delta, cash_delta=cash_delta, cap=self.market_cap, locked=locked
        )


def risk_assess(*, player, market_id: str, side: str, outcome: str, amount: Decimal) -> RiskTicket:
    return RiskTicket(market_id=market_id, market_cap=market_exposure_cap(market_id=market_id))


def player_spread_extra(*, player) -> Decimal:
    """Extra spread for this player from sharp scoring (wall 4); none until a score exists."""
    return Decimal("0")
