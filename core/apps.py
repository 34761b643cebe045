from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "House kernel"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from core import logging_setup
        from core.api import openapi  # noqa: F401 - registers the OpenAPI auth extensions

        logging_setup.configure()
