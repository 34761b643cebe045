"""Prometheus metrics of the house (served at /metrics)."""

from prometheus_client import REGISTRY, Counter, Histogram

TRADES = Counter("house_trades_total", "Trades executed", ["side"])
TRADE_REJECTIONS = Counter("house_trade_rejections_total", "Trades refused, by error code (risk walls are risk.<wall>.<limit>)", ["code"])
WALLET_CALLS = Histogram("house_wallet_call_seconds", "Wallet adapter call latency", ["mode", "operation", "outcome"])
WALLET_MANUAL = Counter(
    "house_wallet_operations_manual_total", "S2S wallet operations flagged for manual handling (alert on any)", ["kind"]
)
WALLET_COMPENSATIONS = Counter("house_wallet_compensations_total", "Debits rolled back by the house", ["reason"])
SETTLEMENT_PAYOUTS = Counter("house_settlement_payouts_total", "Settlement payouts by result", ["action", "result"])
SETTLEMENTS = Counter("house_settlements_total", "Settlements by action and stage", ["action", "stage"])

# The market-data feed (SPEC §11). The feed process exports these when it runs beside gunicorn
# with PROMETHEUS_MULTIPROC_DIR; /metrics also reads the feed's heartbeat from the database.
FEED_TICKS = Counter("house_feed_ticks_total", "Reference price ticks written by the market-data feed")
FEED_LAG = Histogram(
    "house_feed_lag_seconds",
    "Source timestamp of a book to its reference price written",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
FEED_SUSPENSIONS = Counter("house_feed_suspensions_total", "Markets suspended by the feed, by code", ["code"])
FEED_RECONNECTS = Counter("house_feed_reconnects_total", "Market websocket reconnections")
FEED_HTTP_ERRORS = Counter(
    "house_feed_http_errors_total", "Market-data HTTP request attempts that failed, by endpoint family", ["endpoint"]
)

# Collectors that read their figures at scrape time (an app registers them in its AppConfig.ready);
# /metrics adds them to the multi-process registry too.
COLLECTORS: list = []


def register_collector(collector) -> None:
    if collector not in COLLECTORS:
        COLLECTORS.append(collector)
        REGISTRY.register(collector)
