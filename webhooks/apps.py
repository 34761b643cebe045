from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.events import events_listener_register
        from webhooks.tasks import dispatch_kick

        # After a transaction that wrote events commits, the dispatcher is woken (throttled per process).
        events_listener_register(dispatch_kick)
