"""Prometheus metrics of the house (served at /metrics)."""

from prometheus_client import Counter, Histogram

TRADES = Counter("house_trades_total", "Trades executed", ["side"])
TRADE_REJECTIONS = Counter("house_trade_rejections_total", "Trades refused, by error code (risk walls are risk.<wall>.<limit>)", ["code"])
WALLET_CALLS = Histogram("house_wallet_call_seconds", "Wallet adapter call latency", ["mode", "operation", "outcome"])
WALLET_MANUAL = Counter(
    "house_wallet_operations_manual_total", "S2S wallet operations flagged for manual handling (alert on any)", ["kind"]
)
WALLET_COMPENSATIONS = Counter("house_wallet_compensations_total", "Debits rolled back by the house", ["reason"])
SETTLEMENT_PAYOUTS = Counter("house_settlement_payouts_total", "Settlement payouts by result", ["action", "result"])
SETTLEMENTS = Counter("house_settlements_total", "Settlements by action and stage", ["action", "stage"])
