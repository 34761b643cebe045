"""Prometheus metrics of the house (served at /metrics)."""

from prometheus_client import Counter, Histogram

TRADES = Counter("house_trades_total", "Trades executed", ["side"])
TRADE_REJECTIONS = Counter("house_trade_rejections_total", "Trades refused, by error code (risk walls are risk.<wall>.<limit>)", ["code"])
WALLET_CALLS = Histogram("house_wallet_call_seconds", "Wallet adapter call latency", ["mode", "operation", "outcome"])
