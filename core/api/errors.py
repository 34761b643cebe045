"""DRF exception handler: every error is {"error": <message>} (+ "code"), never a stack trace."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import HouseError

log = logging.getLogger("house.api")


def error_response(message: str, *, code: str, status_code: int, headers: dict | None = None, extra: dict | None = None) -> Response:
    return Response({"error": message, "code": code, **(extra or {})}, status=status_code, headers=headers)


def exception_handler(exc, context):
    if isinstance(exc, HouseError):
        return Response(exc.body(), status=exc.status)
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return error_response("Unauthorized", code="unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, (exceptions.PermissionDenied, DjangoPermissionDenied)):
        message = str(getattr(exc, "detail", "")) or "Admin access required"
        return error_response(message, code="forbidden", status_code=403)
    if isinstance(exc, exceptions.Throttled):
        headers = {"Retry-After": str(int(exc.wait or 1))}
        return error_response("Rate limit exceeded", code="rate_limited", status_code=429, headers=headers)
    if isinstance(exc, RequestDataTooBig):  # Content-Length past DATA_UPLOAD_MAX_MEMORY_SIZE (Django's request.body)
        return error_response("Request body too large", code="body_too_large", status_code=413)
    if isinstance(exc, SuspiciousOperation):  # Django's refusals of a malformed request: a 400, as Django answers them
        log.warning("suspicious request: %s", exc)
        return error_response("Bad request", code="bad_request", status_code=400)
    if isinstance(exc, exceptions.ParseError):
        return error_response("Malformed JSON", code="malformed_json", status_code=400)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return error_response("Content-Type must be application/json", code="unsupported_media_type", status_code=415)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return error_response("Method not allowed", code="method_not_allowed", status_code=405)
    if isinstance(exc, (exceptions.NotFound, Http404)):
        return error_response("Not found", code="not_found", status_code=404)
    if isinstance(exc, exceptions.APIException):
        return error_response(str(exc.detail), code=str(exc.default_code), status_code=exc.status_code)
    if isinstance(exc, (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)):
        # The database went away (restart, failover, a connection broken while idle): nothing
        # this request began was committed unless it reached COMMIT; Django drops the connection.
        # Redis out of reach (the walls' counters, rate limits): the walls run before any money moves.
        log.warning("backing service unavailable: %s: %s", type(exc).__name__, exc)
        return error_response(
            "Service temporarily unavailable, please retry", code="unavailable", status_code=503, headers={"Retry-After": "1"}
        )
    log.exception("unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "?")
    return error_response("Internal server error", code="internal_error", status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)
