from django.urls import path

from casino.api import catalog, operator_views, views
from casino.api.operator import lists as operator_lists
from casino.api.operator import players as operator_players
from casino.api.operator import reports as operator_reports
from risk.api.views import RiskConfigView
from settlement.api.views import ResolutionConfirmView, ResolutionRejectView, ResolutionsView, ResolveView
from webhooks.api.views import EventsView, WebhookRotateView, WebhooksView, WebhookView

urlpatterns = [
    path("trade", views.TradeView.as_view(), name="trade"),
    path("quote", views.QuoteView.as_view(), name="quote"),
    path("balance", views.BalanceView.as_view(), name="balance"),
    path("deposit", views.DepositView.as_view(), name="deposit"),
    path("withdraw", views.WithdrawView.as_view(), name="withdraw"),
    path("positions", views.PositionsView.as_view(), name="positions"),
    path("trades", views.TradesView.as_view(), name="trades"),
    path("markets", views.MarketsView.as_view(), name="markets"),
    path("catalog", catalog.CatalogView.as_view(), name="catalog"),
    path("catalog/<str:market_id>", catalog.CatalogMarketView.as_view(), name="catalog-market"),
    path("operator/sessions", operator_views.OperatorSessionView.as_view(), name="operator-sessions"),
    path("operator/players", operator_players.OperatorPlayersView.as_view(), name="operator-players"),
    path("operator/players/<str:playerId>", operator_players.OperatorPlayerView.as_view(), name="operator-player"),
    path("operator/reports/daily", operator_reports.DailyReportView.as_view(), name="operator-reports-daily"),
    path("operator/reports/monthly", operator_reports.MonthlyReportView.as_view(), name="operator-reports-monthly"),
    path("operator/webhooks", WebhooksView.as_view(), name="operator-webhooks"),
    path("operator/webhooks/<str:webhook_id>", WebhookView.as_view(), name="operator-webhook"),
    path("operator/webhooks/<str:webhook_id>/rotate-secret", WebhookRotateView.as_view(), name="operator-webhook-rotate"),
    path("operator/events", EventsView.as_view(), name="operator-events"),
    path("operator/trades", operator_lists.OperatorTradesView.as_view(), name="operator-trades"),
    path("operator/positions", operator_lists.OperatorPositionsView.as_view(), name="operator-positions"),
    path("operator/transactions", operator_lists.OperatorTransactionsView.as_view(), name="operator-transactions"),
    path("operator/exposure", operator_lists.OperatorExposureView.as_view(), name="operator-exposure"),
    path("operator/settlements", operator_lists.OperatorSettlementsView.as_view(), name="operator-settlements"),
    path("admin/balance", operator_views.AdminBalanceView.as_view(), name="admin-balance"),
    path("admin/prices", operator_views.AdminPricesView.as_view(), name="admin-prices"),
    path("admin/risk", RiskConfigView.as_view(), name="admin-risk"),
    path("resolve", ResolveView.as_view(), name="resolve"),
    path("admin/resolutions", ResolutionsView.as_view(), name="admin-resolutions"),
    path("admin/resolutions/<str:proposal_id>/confirm", ResolutionConfirmView.as_view(), name="admin-resolution-confirm"),
    path("admin/resolutions/<str:proposal_id>/reject", ResolutionRejectView.as_view(), name="admin-resolution-reject"),
]
