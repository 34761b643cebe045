from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Market data"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from core.api import health
        from core.metrics import register_collector
        from marketdata.status import FeedCollector, feed_status

        health.register_info("feed", feed_status)
        register_collector(FeedCollector())
