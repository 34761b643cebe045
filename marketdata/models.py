"""The feed's own records: how each market is found at its source, and the feed process's state."""

from django.db import models

PRICE = {"max_digits": 8, "decimal_places": 4}


class MarketSource(models.Model):
    """A market as Polymarket knows it: its two tokens and what the source last said about it."""

    market = models.OneToOneField("casino.Market", on_delete=models.CASCADE, primary_key=True, related_name="source")
    yes_token = models.CharField(max_length=100, unique=True)
    no_token = models.CharField(max_length=100, unique=True)
    active = models.BooleanField(default=True)
    closed = models.BooleanField(default=False)
    accepting_orders = models.BooleanField(default=True)
    resolution_status = models.CharField(max_length=16, blank=True, default="", help_text="umaResolutionStatus")
    outcome_prices = models.JSONField(null=True, blank=True)
    tracked = models.BooleanField(default=True, help_text="Prices followed: listed, or holding open positions.")
    seen_at = models.DateTimeField(help_text="Last time the catalogue sync saw the market.")
    best_bid = models.DecimalField(**PRICE, null=True, blank=True, help_text="YES best bid at the source, cents.")
    best_ask = models.DecimalField(**PRICE, null=True, blank=True, help_text="YES best ask at the source, cents.")
    book_at = models.DateTimeField(null=True, blank=True, help_text="Source time of the last book seen.")

    class Meta:
        db_table = "marketdata_sources"
        indexes = [models.Index(fields=["tracked"], name="source_tracked")]

    def __str__(self) -> str:
        return self.market_id


class FeedState(models.Model):
    """The single row the active feed process keeps current (its heartbeat); /metrics and /readyz read it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    holder = models.CharField(max_length=200, blank=True, default="", help_text="host:pid of the active feed")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    stream_connected = models.BooleanField(default=False)
    last_event_at = models.DateTimeField(null=True, blank=True)
    last_refresh_at = models.DateTimeField(null=True, blank=True)
    last_catalogue_at = models.DateTimeField(null=True, blank=True)
    stats = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "marketdata_feed_state"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="feed_state_singleton")]
