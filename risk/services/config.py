"""The risk configuration as the walls read it: cached per process, reloaded on the next trade
after any change (a version number in Redis is bumped by every save)."""

import threading
from dataclasses import dataclass
from decimal import Decimal

from casino.services.markets import casino_settings
from risk import counters
from risk.models import CategoryRiskLimit, MarketRiskLimit, RiskSettings, Tier


@dataclass(frozen=True)
class RiskConfig:
    """Everything a trade reads that staff can change: risk thresholds and the casino settings
    (spread, price tolerance, criteria), all invalidated by the same version number."""

    version: str | None
    settings: RiskSettings
    tiers: dict[str, Tier]
    market_caps: dict[str, Decimal]
    casino: object = None
    category_caps: dict[str, Decimal] | None = None  # issue 14: a category's own cap, by key

    def market_cap(self, market_id: str) -> Decimal:
        return self.market_caps.get(market_id, self.settings.default_market_exposure_cap)

    def tier(self, name: str) -> Tier | None:
        return self.tiers.get(name) or self.tiers.get("standard")

    def category_cap(self, category: str) -> Decimal:
        """The category's own cap if it has one, else the house default (``category``: the key)."""
        return (self.category_caps or {}).get(category, self.settings.category_exposure_cap)


_lock = threading.Lock()
_cached: RiskConfig | None = None


def risk_settings() -> RiskSettings:
    row = RiskSettings.objects.filter(pk=1).first()
    if row is None:
        row, _ = RiskSettings.objects.get_or_create(pk=1)
    return row


def risk_config(*, verify: bool = True) -> RiskConfig:
    """The current configuration.

    verify=True (quotes, admin, API): one read of the shared version number, database reads
    only after a change. verify=False (the trade path): this process's copy as it is; the
    walls' counter reservation checks its version atomically in Redis and reloads on a
    mismatch (risk_config_reload), so a change still applies to the very next trade.
    """
    cached = _cached
    if cached is not None and not verify:
        return cached
    try:
        version = counters.config_version()
    except Exception:  # noqa: BLE001 - no shared store: read the database every time
        version = None
    if cached is not None and version is not None and cached.version == version:
        return cached
    return _load(version)


def risk_config_reload() -> RiskConfig:
    return risk_config(verify=True)


def _load(version: str | None) -> RiskConfig:
    global _cached
    config = RiskConfig(
        version=version,
        settings=risk_settings(),
        tiers={t.name: t for t in Tier.objects.all()},
        market_caps=dict(MarketRiskLimit.objects.values_list("market_id", "exposure_cap")),
        casino=casino_settings(),
        category_caps=dict(CategoryRiskLimit.objects.values_list("category", "exposure_cap")),
    )
    with _lock:
        _cached = config
    return config


def risk_config_changed(**kwargs) -> None:
    """Signal receiver: any risk configuration write invalidates every worker's cached copy.

    The version is bumped when the write commits (a worker reloading before the commit would
    otherwise cache the old rows under the new version)."""
    from django.db import transaction

    global _cached
    _cached = None
    transaction.on_commit(_bump_version)


def _bump_version() -> None:
    global _cached
    _cached = None
    try:
        counters.config_version_bump()
    except Exception:  # noqa: BLE001 - no shared store: every read goes to the database anyway
        pass
