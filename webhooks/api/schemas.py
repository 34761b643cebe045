"""Request/response shapes of the webhook endpoints for the OpenAPI document (validation: services)."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from core.events import EVENT_TYPES


class WebhookCreateRequestSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="https only; must not resolve to loopback, private or link-local addresses")
    events = serializers.ListField(child=serializers.CharField(), help_text=f'["*"] or some of: {", ".join(EVENT_TYPES)}')


class WebhookSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    disabledReason = serializers.CharField(allow_null=True)
    failingSince = serializers.DateTimeField(allow_null=True)
    previousSecretExpiresAt = serializers.DateTimeField(allow_null=True, help_text="During a rotation, the old secret signs until then")
    createdAt = serializers.DateTimeField()


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(help_text="whsec_…, shown once")


class WebhookListSerializer(serializers.Serializer):
    webhooks = WebhookSerializer(many=True)


class WebhookRotatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    secret = serializers.CharField(help_text="The new whsec_… secret, shown once")
    previousSecretExpiresAt = serializers.DateTimeField()


class EventSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="evt_<number>: the webhook-id of its deliveries; ids increase")
    type = serializers.ChoiceField(EVENT_TYPES)
    timestamp = serializers.DateTimeField()
    data = serializers.DictField()


class EventsResponseSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


EVENTS_PARAMETERS = [
    OpenApiParameter(
        "after",
        str,
        description="Events after this one (evt_… or its number), in commit order: pass the last id you received; "
        "ids are unique but a later page may hold a smaller one",
    ),
    OpenApiParameter("type", str, enum=list(EVENT_TYPES)),
    OpenApiParameter("limit", int, description="Default 100, max 1000"),
    OpenApiParameter("cursor", str, description="nextCursor of the previous page"),
]
