"""Admin building blocks every app uses, and the kernel's own table (idempotency records).

Money, keys and prices change only through services; an admin module parses forms, calls them
and shows the result. Secrets are shown once, in a message, right after they are issued.
"""

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.template.response import TemplateResponse
from django.urls import reverse

from core.models import Event, IdempotencyRecord

admin.site.site_header = "House operations"
admin.site.site_title = "House admin"
admin.site.index_title = "Operations"

CONFIRM_TEMPLATE = "admin/house/confirm_rotation.html"


class ReadOnlyAdminMixin:
    """Records written only by services (trades, ledger, ...): staff may look, never touch."""

    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SingletonAdminMixin:
    """Configuration held in one row (pk 1): edit it, never add a second one or delete it."""

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not self.model.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


def admin_change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])


def confirm_rotation(
    modeladmin: admin.ModelAdmin,
    request,
    objects,
    *,
    what: str,
    rotate: Callable[[object], str],
    describe: Callable[[object, str], str],
    action: str | None = None,
):
    """Ask before rotating a credential (the old one stops working at once), then rotate.

    Used by change-list actions (``action`` set: the confirmation posts the action again) and
    by the per-object views. Returns the confirmation page, or None once rotated.
    """
    objects = list(objects)
    if request.method == "POST" and request.POST.get("post") == "yes":
        for obj in objects:
            secret = rotate(obj)
            modeladmin.log_change(request, obj, [{"changed": {"fields": [what]}}])
            messages.warning(request, describe(obj, secret))
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"Rotate {what}?",
        "what": what,
        "objects": objects,
        "opts": modeladmin.model._meta,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


def copy_saved(saved, *, into) -> None:
    """Make the admin's unsaved instance the row a service created (for the log entry and redirect)."""
    for field in saved._meta.concrete_fields:
        setattr(into, field.attname, getattr(saved, field.attname))
    into._state.adding = False
    into._state.db = saved._state.db


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "scope", "key", "status_code"]
    list_filter = ["status_code"]
    search_fields = ["scope", "key"]
    ordering = ["-created_at"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The outbox (SPEC §14): every event operators are told about, as written with its change."""

    list_display = ["id", "type", "operator_id", "created_at", "xact_id", "request_id"]
    list_filter = ["type"]
    search_fields = ["=id", "=operator_id", "request_id"]
    ordering = ["-id"]
    show_full_result_count = False
