"""Request id: taken from X-Request-Id or made up, bound to every log line, echoed back, and sent on
the calls the house makes on the request's behalf (wallet calls, webhooks, the tasks it enqueues:
core.task_request_ids)."""

import re
import uuid

import structlog
from django.conf import settings

_SAFE = re.compile(r"^[A-Za-z0-9\-_.]{1,64}$")


def request_id_valid(value: object) -> bool:
    """An id we accept from outside (a header, a task message): short, no spaces or control characters."""
    return isinstance(value, str) and bool(_SAFE.match(value))


def request_id_new() -> str:
    return str(uuid.uuid4())


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if request_id_valid(incoming) else request_id_new()
        request.request_id = request_id
        # Cleared here, not on the way out: Django logs a 4xx/5xx (django.request) after the
        # middleware returns, and that line carries the id too. request_finished clears it (core.apps).
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        return response


def request_id_current() -> str | None:
    """The id of the request (or task) being served, for the calls the house makes on its behalf
    (wallet calls, webhook deliveries carry it as X-Request-Id); None outside one."""
    return structlog.contextvars.get_contextvars().get("request_id")


def request_id_release(**kwargs) -> None:
    """request_finished receiver: the thread serves no request any more."""
    structlog.contextvars.clear_contextvars()


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind ``TRUSTED_PROXIES`` proxies the address the outermost
    one saw (X-Forwarded-For counted from the right; entries further left are the client's own word)."""
    proxies = getattr(settings, "TRUSTED_PROXIES", 0)
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


class ContentSecurityPolicyMiddleware:
    """Sends ``settings.CONTENT_SECURITY_POLICY`` on every response that has none (the admin, the
    dashboard, the API docs pages; harmless on JSON). Django 5.2 has no CSP of its own."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", "")

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response
