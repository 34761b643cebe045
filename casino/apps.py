from django.apps import AppConfig


class CasinoConfig(AppConfig):
    name = "casino"
    verbose_name = "Casino"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from casino.services import credentials
        from core.api import auth

        # The kernel authenticates; casino owns the credentials it checks.
        auth.register_bearer_token(credentials.SESSION_TOKEN_PREFIX, credentials.player_principal)
        auth.register_bearer_token(credentials.STAFF_TOKEN_PREFIX, credentials.staff_principal)
        auth.register_operator_key(credentials.operator_principal)
