from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "House kernel"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.core.signals import request_finished

        from core import logging_setup
        from core.api import openapi  # noqa: F401 - registers the OpenAPI auth extensions
        from core.middleware import request_id_release

        logging_setup.configure()
        request_finished.connect(request_id_release, dispatch_uid="house.request_id.release")
