"""Operator endpoints of SPEC §14 (X-Operator-Key, strictly the calling operator's):

POST   operator/webhooks                     subscribe an endpoint; the secret is in this answer only
GET    operator/webhooks                     the operator's endpoints
DELETE operator/webhooks/{id}                unsubscribe
POST   operator/webhooks/{id}/rotate-secret  a new secret; the old one signs beside it for 24 h
GET    operator/events?after=&type=          the last 30 days of events, oldest first, for replay
"""

import re
import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from core.api import inputs
from core.api.auth import IsOperator, OperatorKeyAuthentication
from core.api.base import HouseAPIView
from core.api.openapi import ErrorSerializer
from core.api.pagination import keyset_page, page_params
from core.api.rendering import iso
from core.errors import HouseError
from core.events import EVENT_TYPES, events_ordering
from core.models import EVENT_ID_PREFIX, event_public_id
from webhooks import selectors
from webhooks.api import schemas as s
from webhooks.services.endpoints import endpoint_create, endpoint_delete, endpoint_of, endpoint_rotate_secret

_EVENT_ID = re.compile(rf"^(?:{EVENT_ID_PREFIX})?(\d{{1,18}})$")


def _endpoint(endpoint, *, secret: str | None = None) -> dict:
    body = {
        "id": str(endpoint.pk),
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason or None,
        "failingSince": iso(endpoint.failing_since) if endpoint.failing_since else None,
        "previousSecretExpiresAt": iso(endpoint.previous_secret_expires_at) if endpoint.previous_secret_expires_at else None,
        "createdAt": iso(endpoint.created_at),
    }
    if secret is not None:
        body["secret"] = secret
    return body


def _endpoint_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise HouseError("Webhook not found", code="not_found", status=404) from None


class _OperatorView(HouseAPIView):
    authentication_classes = [OperatorKeyAuthentication]
    permission_classes = [IsOperator]


class WebhooksView(_OperatorView):
    rate_group, rate = "operator_webhooks", "120/m"

    @extend_schema(
        request=s.WebhookCreateRequestSerializer,
        responses={201: s.WebhookCreatedSerializer, 400: ErrorSerializer},
        summary="Subscribe a webhook endpoint (the signing secret is returned once)",
        tags=["operator webhooks"],
    )
    def post(self, request):
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "url", "events")
        issued = endpoint_create(operator=request.user.operator, url=data["url"], events=data["events"])
        return Response(_endpoint(issued.endpoint, secret=issued.secret), status=201)

    @extend_schema(
        responses={200: s.WebhookListSerializer, 400: ErrorSerializer},
        summary="The operator's webhook endpoints",
        tags=["operator webhooks"],
    )
    def get(self, request):
        rows = request.user.operator.webhook_endpoints.order_by("created_at", "id")
        return Response({"webhooks": [_endpoint(e) for e in rows]})


class WebhookView(_OperatorView):
    rate_group, rate = "operator_webhooks", "120/m"

    @extend_schema(
        responses={204: OpenApiResponse(description="Deleted"), 400: ErrorSerializer, 404: ErrorSerializer},
        summary="Delete a webhook endpoint",
        tags=["operator webhooks"],
    )
    def delete(self, request, webhook_id: str):
        endpoint_delete(operator=request.user.operator, endpoint_id=_endpoint_id(webhook_id))
        return Response(status=204)


class WebhookRotateView(_OperatorView):
    rate_group, rate = "operator_webhooks", "120/m"

    @extend_schema(
        request=None,
        responses={200: s.WebhookRotatedSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        summary="Rotate the signing secret (the old one keeps signing for 24 hours)",
        tags=["operator webhooks"],
    )
    def post(self, request, webhook_id: str):
        endpoint = endpoint_of(operator=request.user.operator, endpoint_id=_endpoint_id(webhook_id))
        secret = endpoint_rotate_secret(endpoint=endpoint)
        endpoint.refresh_from_db()
        return Response({"id": str(endpoint.pk), "secret": secret, "previousSecretExpiresAt": iso(endpoint.previous_secret_expires_at)})


class EventsView(_OperatorView):
    rate_group, rate = "operator_events", "600/m"

    @extend_schema(
        parameters=s.EVENTS_PARAMETERS,
        responses={200: s.EventsResponseSerializer, 400: ErrorSerializer},
        summary="The operator's events of the last 30 days in commit order (replay and reconciliation)",
        tags=["operator webhooks"],
    )
    def get(self, request):
        params = request.query_params
        after = params.get("after")
        if after is not None:
            match = _EVENT_ID.match(after)
            if match is None:
                raise HouseError("Invalid after", code="invalid_after")
            after = int(match.group(1))
        event_type = params.get("type")
        if event_type is not None and event_type not in EVENT_TYPES:
            raise HouseError("Unknown event type", code="unknown_event_type", extra={"known": list(EVENT_TYPES)})
        rows = selectors.events_for_replay(operator_id=request.user.operator.pk, after=after, type=event_type)
        page = keyset_page(rows, ordering=events_ordering(), params=page_params(params), scope="operator.events")
        events = [{"id": event_public_id(e.id), "type": e.type, "timestamp": iso(e.created_at), "data": e.data} for e in page.items]
        return Response({"events": events, "nextCursor": page.next_cursor})
