from django.apps import AppConfig


class CasinoConfig(AppConfig):
    name = "casino"
    verbose_name = "Casino"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from casino.services import credentials
        from casino.services.trade_executor import trade_recover
        from core.api import auth
        from wallets.tasks import register_recovery_handler

        # The kernel authenticates; casino owns the credentials it checks.
        auth.register_bearer_token(credentials.SESSION_TOKEN_PREFIX, credentials.player_principal)
        auth.register_bearer_token(credentials.STAFF_TOKEN_PREFIX, credentials.staff_principal)
        auth.register_operator_key(credentials.operator_principal)
        # A trade whose process died between its wallet intent and its outcome is finished here.
        register_recovery_handler("trade", trade_recover)
