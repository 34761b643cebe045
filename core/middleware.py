"""Request id: taken from X-Request-Id or made up, bound to every log line and echoed back."""

import re
import uuid

import structlog

_SAFE = re.compile(r"^[A-Za-z0-9\-_.]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE.match(incoming) else str(uuid.uuid4())
        request.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        return response


def request_id_current() -> str | None:
    """The id of the request (or task) being served, for the calls the house makes on its behalf
    (wallet calls, webhook deliveries carry it as X-Request-Id); None outside one."""
    return structlog.contextvars.get_contextvars().get("request_id")
