"""The trade executor. Start reading at steps.py: the reference document's 12 steps in order.

steps.py             steps 1-6, and the hand-over to one of the three ways of doing 7-12
context.py           the request, the result, the context the steps fill in, the interface
                     of steps 7-12 and the rules they share (the position after a trade)
house_wallet.py      7-12 when the house holds the money: one transaction, step by step
house_wallet_sql.py  the same on PostgreSQL in two round trips of prepared statements
operator_wallet.py   7-12 when the operator holds the money: intent -> call -> outcome,
                     compensation, and recovery of what a dead process left half-done
"""

from casino.services.trade_executor.context import TradeRequest, TradeResult
from casino.services.trade_executor.operator_wallet import trade_recover
from casino.services.trade_executor.steps import trade_execute

__all__ = ["TradeRequest", "TradeResult", "trade_execute", "trade_recover"]
