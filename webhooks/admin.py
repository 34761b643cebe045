"""Webhook endpoints, deliveries (and the kernel's events, core/admin.py) for staff.

Endpoints: created here like through the API (the secret is shown once, in a message), secrets
rotated with confirmation (the old one keeps signing 24 h), disabled ones listed first in red
with their reason (an endpoint failing for 3 days is disabled by the delivery task), re-enabled
by an action. Deliveries are read-only.
"""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from casino.models import Operator
from core.admin import ReadOnlyAdminMixin, confirm_rotation, copy_saved
from core.errors import HouseError
from core.events import EVENT_TYPES
from webhooks.adapters.endpoint import url_check
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services.endpoints import endpoint_create, endpoint_disable, endpoint_enable, endpoint_rotate_secret, events_validate


class EndpointCreateForm(forms.ModelForm):
    operator = forms.ModelChoiceField(queryset=Operator.objects.order_by("name"))
    url = forms.CharField(max_length=2000, help_text="https only; no loopback, private or link-local targets.")
    event_types = forms.CharField(initial="*", help_text=f'"*" for every event, or a comma-separated list of: {", ".join(EVENT_TYPES)}')

    class Meta:
        model = WebhookEndpoint
        fields = ["operator", "url"]

    def clean(self):
        cleaned = super().clean()
        raw = cleaned.get("event_types") or ""
        try:
            cleaned["events"] = events_validate([e.strip() for e in raw.split(",") if e.strip()])
        except HouseError as exc:
            self.add_error("event_types", exc.message)
        if cleaned.get("url"):
            try:
                url_check(cleaned["url"])
            except HouseError as exc:
                self.add_error("url", exc.message)
        return cleaned


def _secret_message(endpoint: WebhookEndpoint, secret: str) -> str:
    return f"Signing secret of {endpoint.url} ({endpoint.operator.name}): {secret} (shown once; give it to the operator now)."


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "operator", "event_list", "state", "failing_since", "created_at"]
    list_filter = ["enabled", "operator"]
    search_fields = ["url", "operator__name"]
    ordering = ["enabled", "-failing_since", "-created_at"]  # disabled first, then the failing ones
    actions = ["rotate_secret", "enable", "disable"]
    list_select_related = ["operator"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = EndpointCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["operator", "url", "event_types"]
        return [
            "id",
            "operator",
            "url",
            "events",
            "state",
            "disabled_reason",
            "disabled_at",
            "failing_since",
            "previous_secret_expires_at",
            "created_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.events)

    @admin.display(description="state")
    def state(self, obj):
        if not obj.enabled:
            return format_html('<strong style="color:#ba2121">DISABLED</strong> {}', obj.disabled_reason)
        if obj.failing_since:
            return format_html('<span style="color:#c77c02">failing since {}</span>', obj.failing_since.strftime("%Y-%m-%d %H:%M"))
        return "ok"

    def changelist_view(self, request, extra_context=None):
        disabled = WebhookEndpoint.objects.filter(enabled=False).count()
        if disabled:
            messages.error(request, f"{disabled} webhook endpoint(s) disabled (failing for 3 days, or by staff): listed first.")
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        issued = endpoint_create(operator=data["operator"], url=data["url"], events=data["events"])
        copy_saved(issued.endpoint, into=obj)
        messages.warning(request, _secret_message(issued.endpoint, issued.secret))

    @admin.action(description="Rotate signing secret (the old one signs 24 h more)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        return confirm_rotation(
            self,
            request,
            queryset.select_related("operator"),
            what="webhook signing secret",
            action="rotate_secret",
            rotate=lambda endpoint: endpoint_rotate_secret(endpoint=endpoint),
            describe=_secret_message,
        )

    @admin.action(description="Enable the selected endpoints", permissions=["change"])
    def enable(self, request, queryset):
        for endpoint in queryset:
            endpoint_enable(endpoint=endpoint)
        messages.success(request, "Enabled.")

    @admin.action(description="Disable the selected endpoints", permissions=["change"])
    def disable(self, request, queryset):
        count = endpoint_disable(endpoint_ids=list(queryset.values_list("pk", flat=True)), reason=f"Disabled by {request.user}")
        messages.success(request, f"Disabled {count}.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "event_id", "endpoint", "status", "attempts", "next_attempt_at", "last_status_code", "last_error", "delivered_at"]
    list_filter = ["status"]
    search_fields = ["=event__id", "endpoint__url"]
    ordering = ["-id"]
    list_select_related = ["endpoint"]
