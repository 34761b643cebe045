"""The risk configuration as the walls read it: cached per process, reloaded on the next trade
after any change (a version number in the shared cache is bumped by every save)."""

import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.core.cache import cache

from risk.models import MarketRiskLimit, RiskSettings, Tier

VERSION_KEY = "risk:config:version"


@dataclass(frozen=True)
class RiskConfig:
    version: str | None
    settings: RiskSettings
    tiers: dict[str, Tier]
    market_caps: dict[str, Decimal]

    def market_cap(self, market_id: str) -> Decimal:
        return self.market_caps.get(market_id, self.settings.default_market_exposure_cap)

    def tier(self, name: str) -> Tier | None:
        return self.tiers.get(name) or self.tiers.get("standard")


_lock = threading.Lock()
_cached: RiskConfig | None = None


def risk_settings() -> RiskSettings:
    row = RiskSettings.objects.filter(pk=1).first()
    if row is None:
        row, _ = RiskSettings.objects.get_or_create(pk=1)
    return row


def risk_config() -> RiskConfig:
    """The current configuration; one cache read per call, database reads only after a change."""
    global _cached
    try:
        version = cache.get(VERSION_KEY)
        if version is None:  # never a number that was used before: a cleared cache cannot revive an old copy
            cache.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
            version = cache.get(VERSION_KEY)
    except Exception:  # noqa: BLE001 - no shared cache: read the database every time
        version = None
    cached = _cached
    if cached is not None and version is not None and cached.version == version:
        return cached
    config = RiskConfig(
        version=version,
        settings=risk_settings(),
        tiers={t.name: t for t in Tier.objects.all()},
        market_caps=dict(MarketRiskLimit.objects.values_list("market_id", "exposure_cap")),
    )
    with _lock:
        _cached = config
    return config


def risk_config_changed(**kwargs) -> None:
    """Signal receiver: any risk configuration write invalidates every worker's cached copy."""
    global _cached
    _cached = None
    try:
        cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:  # noqa: BLE001 - no shared cache: every read goes to the database anyway
        pass
