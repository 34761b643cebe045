from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class RiskConfig(AppConfig):
    name = "risk"
    verbose_name = "Risk"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from casino.models import CasinoSettings
        from risk.models import MarketRiskLimit, OperatorRiskLimit, RiskSettings, Tier
        from risk.services.config import risk_config_changed

        # CasinoSettings feed the trade's price and tradeability checks: cached with the rest.
        for model in (RiskSettings, Tier, MarketRiskLimit, OperatorRiskLimit, CasinoSettings):
            post_save.connect(risk_config_changed, sender=model, dispatch_uid=f"risk-config-{model.__name__}-save")
            post_delete.connect(risk_config_changed, sender=model, dispatch_uid=f"risk-config-{model.__name__}-delete")

        # Issue 14, category caps: a category's own cap is configuration too.
        from risk.models import CategoryRiskLimit

        post_save.connect(risk_config_changed, sender=CategoryRiskLimit, dispatch_uid="risk-config-CategoryRiskLimit-save")
        post_delete.connect(risk_config_changed, sender=CategoryRiskLimit, dispatch_uid="risk-config-CategoryRiskLimit-delete")
