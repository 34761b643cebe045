"""Whether the market feed is alive, for /readyz (information) and /metrics (gauges read at scrape
time from the feed's heartbeat row and the markets, so any gunicorn worker can answer)."""

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from casino.models import Market, Outcome, ReferencePrice
from marketdata.models import FeedState, MarketSource

ALIVE_SECONDS = 15


def feed_status() -> dict:
    state = FeedState.objects.filter(pk=1).first()
    if state is None or state.heartbeat_at is None:
        return {"status": "absent"}
    age = (timezone.now() - state.heartbeat_at).total_seconds()
    return {
        "status": "alive" if age < ALIVE_SECONDS else "stale",
        "holder": state.holder,
        "heartbeatAgeSeconds": round(age, 1),
        "streamConnected": state.stream_connected,
        "lag": (state.stats or {}).get("lag", {}),
    }


class FeedCollector:
    NAMES = [
        "house_feed_up",
        "house_feed_heartbeat_age_seconds",
        "house_feed_stream_connected",
        "house_feed_lag_p99_seconds",
        "house_reference_age_max_seconds",
        "house_markets_suspended",
    ]

    def describe(self):
        """The names only: registering must not read the database (it runs at start-up)."""
        return [GaugeMetricFamily(name, name) for name in self.NAMES]

    def collect(self):
        status = feed_status()
        nan = float("nan")
        age, lag = status.get("heartbeatAgeSeconds"), status.get("lag", {}).get("p99_ms")
        yield _gauge("house_feed_up", "1 while the active market feed's heartbeat is fresh", int(status["status"] == "alive"))
        yield _gauge("house_feed_heartbeat_age_seconds", "Seconds since the market feed's last heartbeat", nan if age is None else age)
        connected = int(bool(status.get("streamConnected")))
        yield _gauge("house_feed_stream_connected", "1 while the feed's market websocket is connected", connected)
        yield _gauge("house_feed_lag_p99_seconds", "Recent p99 of source time to reference written", nan if lag is None else lag / 1000)
        tracked = MarketSource.objects.filter(tracked=True).values("market_id")
        oldest = ReferencePrice.objects.filter(market_id__in=tracked, outcome=Outcome.YES).aggregate(at=Min("updated_at"))["at"]
        age = (timezone.now() - oldest).total_seconds() if oldest else nan
        yield _gauge("house_reference_age_max_seconds", "Age of the stalest reference price of a tracked market", age)
        suspended = GaugeMetricFamily("house_markets_suspended", "Markets the feed suspended, by code", labels=["code"])
        for row in Market.objects.exclude(suspended_reason="").values("suspended_reason").annotate(n=Count("pk")):
            suspended.add_metric([row["suspended_reason"]], row["n"])
        yield suspended


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
