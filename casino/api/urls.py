from django.urls import path

from casino.api import operator_views, views
from risk.api.views import RiskConfigView
from settlement.api.views import ResolveView

urlpatterns = [
    path("trade", views.TradeView.as_view(), name="trade"),
    path("quote", views.QuoteView.as_view(), name="quote"),
    path("balance", views.BalanceView.as_view(), name="balance"),
    path("deposit", views.DepositView.as_view(), name="deposit"),
    path("withdraw", views.WithdrawView.as_view(), name="withdraw"),
    path("positions", views.PositionsView.as_view(), name="positions"),
    path("trades", views.TradesView.as_view(), name="trades"),
    path("markets", views.MarketsView.as_view(), name="markets"),
    path("operator/sessions", operator_views.OperatorSessionView.as_view(), name="operator-sessions"),
    path("admin/balance", operator_views.AdminBalanceView.as_view(), name="admin-balance"),
    path("admin/prices", operator_views.AdminPricesView.as_view(), name="admin-prices"),
    path("admin/risk", RiskConfigView.as_view(), name="admin-risk"),
    path("resolve", ResolveView.as_view(), name="resolve"),
]
