from django.apps import AppConfig


class CasinoConfig(AppConfig):
    name = "casino"
    verbose_name = "Casino"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from casino import logging_setup
        from casino.api import openapi  # noqa: F401 - registers the OpenAPI auth extensions

        logging_setup.configure()
